"""The optimisers every trainer of lhl offers, built by one name (`train.optimizer`).

The names are read by the config checks of commands that train nothing (`lhl run --print-config`,
`lhl list`): torch is imported only by the builders."""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

if TYPE_CHECKING:
    import torch

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine", "poly")


def can_fuse(params) -> bool:
    """torch's fused kernels (one kernel over all tensors) take float parameters on CPU or CUDA."""
    return bool(params) and all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)


def build_optimizer(
    params: Iterable[torch.nn.Parameter], name: str, lr: float, weight_decay: float = 0.0,
    momentum: float = 0.9, fused: bool = False,
) -> torch.optim.Optimizer:
    """Adam / AdamW (coupled / decoupled weight decay) or SGD with momentum. `fused`: torch's fused
    implementation where the parameters allow it (the same update; on CPU about 5x faster than the
    default per-tensor loop, and different only in floating-point rounding)."""
    import torch

    params = [p for p in params if p.requires_grad]
    impl = {"fused": True} if fused and can_fuse(params) else {}
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, **impl)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, **impl)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, **impl)
    raise ValueError(f"train.optimizer={name!r}: choose one of {', '.join(OPTIMIZERS)}")


def phase_schedule(optimizer: torch.optim.Optimizer, name: str, total_steps: int, power: float = 0.9):
    """The learning rate over one phase's `total_steps` optimiser steps (torch's schedulers, stepped
    per step): constant (None, the release), cosine (half a cosine from lr to 0) or poly
    ((1 - t / T)^power to 0, DeepLab's; as `lhl distill` uses)."""
    import torch

    if name == "constant":
        return None
    total = max(1, int(total_steps))
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total, eta_min=0.0)
    if name == "poly":
        return torch.optim.lr_scheduler.PolynomialLR(optimizer, total_iters=total, power=power)
    raise ValueError(f"train.lr_schedule={name!r}: choose one of {', '.join(SCHEDULES)}")
