"""What a number was made on. A run's numbers depend on more than its config: on a CPU the vector
instruction set torch dispatches to (`torch.backends.cpu.get_cpu_capability()`: AVX2, AVX512, ...)
and the thread count pick the kernels and the order of their sums, so the same run on two CPU kinds
differs in rounding, and over a whole lifelong sequence the rounding grows into different results.
Run folders (`results.json` meta `machines`), `lhl compare` and the benchmarks record this, so a
table says when its rows came from different machines (`reporting.render.machines_note`)."""
from __future__ import annotations

import platform
from pathlib import Path
from typing import TYPE_CHECKING, Dict, Optional, Union

if TYPE_CHECKING:
    import torch

CPUINFO = Path("/proc/cpuinfo")


def cpu_name() -> str:
    """The CPU's model name (Linux `/proc/cpuinfo`), else `platform.processor()`, else the architecture."""
    try:
        for line in CPUINFO.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.lower().startswith("model name") and ":" in line:
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def device_name(device: Union[str, "torch.device", None] = None) -> str:
    """The GPU's name for a CUDA device, the CPU's model name otherwise."""
    import torch

    device = torch.device(device) if device is not None else torch.device("cpu")
    if device.type == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_name(device)
    return cpu_name()


def machine_info(device: Union[str, "torch.device", None] = None, threads: Optional[int] = None) -> Dict[str, object]:
    """{device, cpu_capability, threads, torch}: what decides a run's kernels and so its rounding."""
    import torch

    return {
        "device": device_name(device),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": int(threads if threads is not None else torch.get_num_threads()),
        "torch": torch.__version__,
    }


def machine_label(info: Dict[str, object]) -> str:
    """One line: `Intel(R) Xeon(R) Processor (AVX512), 1 thread(s), torch 2.14.1`."""
    return (f"{info.get('device', '?')} ({info.get('cpu_capability', '?')}), "
            f"{info.get('threads', '?')} thread(s), torch {info.get('torch', '?')}")

