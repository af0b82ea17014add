"""The optimisers every trainer of lhl offers, built by one name (`train.optimizer`)."""
from __future__ import annotations

import math
from typing import Iterable

import torch

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine", "poly")


def build_optimizer(
    params: Iterable[torch.nn.Parameter], name: str, lr: float, weight_decay: float = 0.0,
    momentum: float = 0.9,
) -> torch.optim.Optimizer:
    """Adam / AdamW (coupled / decoupled weight decay) or SGD with momentum."""
    params = [p for p in params if p.requires_grad]
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    raise ValueError(f"train.optimizer={name!r}: choose one of {', '.join(OPTIMIZERS)}")


def phase_schedule(optimizer: torch.optim.Optimizer, name: str, total_steps: int, power: float = 0.9):
    """The learning rate over one phase's `total_steps` optimiser steps: constant (None, the
    release), cosine (half a cosine from lr to 0) or poly ((1 - t / T)^power, DeepLab's)."""
    if name == "constant":
        return None
    if name not in SCHEDULES:
        raise ValueError(f"train.lr_schedule={name!r}: choose one of {', '.join(SCHEDULES)}")
    total = max(1, int(total_steps))
    if name == "cosine":
        factor = lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))  # noqa: E731
    else:
        factor = lambda step: max(0.0, 1.0 - min(step, total) / total) ** power  # noqa: E731
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
