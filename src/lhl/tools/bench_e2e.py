"""`lhl bench-e2e`: one whole sequence (every phase's training and evaluation) run twice, back to
back on the same device and data: as lhl runs it (one shared teacher backbone pass per step, bf16
and channels_last on CUDA, loader workers) and as the release runs it (one teacher pass per old
task, fp32, no loader workers). Wall-clock times, the speed-up and both runs' final metrics go to
a JSON file (written atomically).

Without the preset's dataset on disk (`--data auto`), both runs use NYUv2-shaped synthetic rooms
(795 train / 654 val at 288x384), generated once before the clock starts; the JSON says which.
`--size small` (the CPU check) uses 240 / 120 views at 96x128, 4 epochs of batch 8 instead.
Each run also records where every phase's time went: its training steps, the rest of its fit
(Trainer and loader start-up, data loading, end-of-phase estimates), evaluation, the phase
checkpoint and the plots; `overhead_s` is the fixed cost per phase outside steps and evaluation.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import shutil
import time
from pathlib import Path
from typing import Dict, List

import torch

from lhl.config import load_config
from lhl.data.datamodule import LifelongDataModule, build_dataset
from lhl.core.io import atomic_write_json
from lhl.core.machine import machine_info
from lhl.runs.results import Results
from lhl.reporting.scores import final_metrics
from lhl.engine.runner import PhaseRunner

NYU_SHAPED = "data.options={n_train: 795, n_val: 654, height: 288, width: 384, seed: 0}"
#: the CPU-sized check: the setting of the release-vs-lhl comparison (docs/benchmarks/release-parity.md)
SMALL = ["data.options={n_train: 240, n_val: 120, height: 96, width: 128, seed: 0}", "train.epochs=4",
         "data.batch_size=8", "model.pretrained=false"]
COMMON = ["train.progress_bar=false", "logger=none", "eval.gallery_samples=0"]
#: how the release runs: fp32, no loader workers, the teacher's backbone once per old task
RELEASE = ["train.precision=32-true", "train.channels_last=false", "data.num_workers=0",
           "train.teacher_pass=per_task", "train.compile=false"]
#: lhl's speed settings on a GPU (on a CPU the preset's own settings)
FAST_CUDA = ["train.precision=bf16-mixed", "train.channels_last=true", "data.num_workers=8",
             "train.teacher_pass=shared"]


def _data_overrides(seq: str, method: str, choice: str, extra: List[str], size: str = "full") -> List[str]:
    """The data the two runs share: the preset's, or NYUv2-shaped synthetic rooms."""
    if size == "small":
        return ["data.dataset=synthetic", "data.root=null", *SMALL]
    if choice == "synthetic":
        return ["data.dataset=synthetic", "data.root=null", NYU_SHAPED]
    if choice == "preset":
        return []
    cfg = load_config([], [f"seq={seq}", f"method={method}", *extra])
    try:
        build_dataset(cfg.data, "val", list(cfg.sequence.tasks)[:1])
        return []
    except FileNotFoundError as err:
        print(f"bench-e2e: the preset's data is not here ({str(err).splitlines()[0][:160]}...); "
              "using NYUv2-shaped synthetic rooms", flush=True)
        return ["data.dataset=synthetic", "data.root=null", NYU_SHAPED]


def time_run(overrides: List[str], out_dir: Path) -> Dict:
    """A fresh run of the whole sequence; its wall-clock seconds and final metrics."""
    if out_dir.exists():
        shutil.rmtree(out_dir)
    cfg = load_config([], [*overrides, f"run.out_dir={out_dir}", "run.name=run"])
    runner = PhaseRunner(cfg)
    LifelongDataModule(cfg.data, runner.specs).prepare_data()  # not timed
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    run_dir = runner.run()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    phases = {i: {**t, "overhead_s": runner.timings.overhead(i)} for i, t in runner.timings.phases.items()}
    ckpt_mb = {i: runner.folder.phase_ckpt(i).stat().st_size / 2**20 for i in phases}
    return {"seconds": seconds, "overrides": overrides, "final": final_metrics(Results.load(run_dir)),
            "run_dir": str(run_dir), "phases": phases, "phase_ckpt_mb": ckpt_mb,
            "steps_s": sum(t.get("steps", 0.0) for t in phases.values()),
            "overhead_s": sum(t["overhead_s"] for t in phases.values())}


def cli(argv: List[str]) -> int:
    p = argparse.ArgumentParser(prog="lhl bench-e2e", description=" ".join(__doc__.split("\n\n")[0].split()))
    p.add_argument("--seq", default="nyu_s1_paper", help="sequence preset (default nyu_s1_paper)")
    p.add_argument("--method", default="had_faithful", help="method preset (default had_faithful)")
    p.add_argument("--data", choices=("auto", "preset", "synthetic"), default="auto",
                   help="auto: the preset's data when present, else NYUv2-shaped synthetic rooms")
    p.add_argument("--size", choices=("full", "small"), default="full",
                   help="small: 240/120 synthetic views at 96x128, 4 epochs of batch 8 (the CPU check)")
    p.add_argument("--out", default=None, help="JSON file (default bench/e2e_<device>.json)")
    p.add_argument("overrides", nargs="*", help="key=value applied to both runs (e.g. train.epochs=1)")
    args = p.parse_args(argv)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    data = _data_overrides(args.seq, args.method, args.data, args.overrides, args.size)
    base = [f"seq={args.seq}", f"method={args.method}", *data, *COMMON]
    fast = FAST_CUDA if device == "cuda" else []
    work = Path("bench") / f"e2e_runs_{device}"
    runs = {}
    for name, mode in (("release", RELEASE), ("lhl", fast)):
        print(f"bench-e2e: {name} run ({' '.join(mode) or 'the preset as it is'})", flush=True)
        runs[name] = time_run([*base, *mode, *args.overrides], work / name)
        r = runs[name]
        print(f"bench-e2e: {name}: {r['seconds']:.1f} s ({r['steps_s']:.1f} s in training steps, "
              f"{r['overhead_s']:.1f} s fixed costs outside steps and evaluation)", flush=True)
    result = {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        **machine_info(device),  # device, cpu_capability, threads, torch
        "setting": {"seq": args.seq, "method": args.method, "size": args.size, "data": data or "the preset's",
                    "overrides": args.overrides},
        "runs": runs,
        "speedup": runs["release"]["seconds"] / runs["lhl"]["seconds"],
    }
    out = Path(args.out or f"bench/e2e_{device}.json")
    atomic_write_json(out, result)
    print(f"speed-up of lhl over the release's way: {result['speedup']:.2f}x; written: {out}")
    return 0
