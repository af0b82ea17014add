"""The process's random number generators as one dict of tensors and plain values (for mid-phase
checkpoints, which Lightning loads with `weights_only=True`)."""
from __future__ import annotations

import random
from typing import Any, Dict

import numpy as np
import torch


def rng_states() -> Dict[str, Any]:
    """torch (CPU and every CUDA device), numpy and Python `random` states."""
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "numpy": _numpy_state(),
        "python": random.getstate(),
    }


def _numpy_state():
    """numpy's state with its key array as a tensor: checkpoints load with `weights_only=True`."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return (str(name), torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached))


def set_rng_states(states: Dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    cuda = states.get("cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(states["cuda"])
    name, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    random.setstate(states["python"])
