"""Editing the optimiser's update rather than the gradient.

Under Adam a gradient projection or a constant per-coordinate gradient scale is largely undone:
Adam divides each coordinate by its own running RMS (m/√v is invariant to a constant scale) and
coupled weight decay adds an unprojected term. Editing the update itself, Δθ = θ_after − θ_before,
holds whatever the optimiser: snapshot the weights in `before_optimizer_step`, edit Δθ in
`after_optimizer_step` (a step skipped by the AMP scaler has Δθ = 0 and stays skipped).
"""
from __future__ import annotations

from typing import Callable, Dict, Optional

import torch
from torch import Tensor


class UpdateEditor:
    """`snapshot(params)` before the step; `apply(params, edit)` sets θ ← θ_before + edit(name, Δθ)."""

    def __init__(self) -> None:
        self.before: Optional[Dict[str, Tensor]] = None

    @torch.no_grad()
    def snapshot(self, params: Dict[str, Tensor]) -> None:
        self.before = {n: p.detach().clone() for n, p in params.items()}

    @torch.no_grad()
    def apply(self, params: Dict[str, Tensor], edit: Callable[[str, Tensor], Tensor]) -> None:
        if self.before is None:
            return
        for n, p in params.items():
            if n in self.before:
                start = self.before[n]
                p.copy_(start + edit(n, p.detach() - start))
        self.before = None
