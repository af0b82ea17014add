"""The optimisers every trainer of lhl offers, built by one name (`train.optimizer`)."""
from __future__ import annotations

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
    """The learning rate over one phase's `total_steps` optimiser steps (torch's schedulers, stepped
    per step): constant (None, the release), cosine (half a cosine from lr to 0) or poly
    ((1 - t / T)^power to 0, DeepLab's; as `lhl distill` uses)."""
    if name == "constant":
        return None
    total = max(1, int(total_steps))
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total, eta_min=0.0)
    if name == "poly":
        return torch.optim.lr_scheduler.PolynomialLR(optimizer, total_iters=total, power=power)
    raise ValueError(f"train.lr_schedule={name!r}: choose one of {', '.join(SCHEDULES)}")
