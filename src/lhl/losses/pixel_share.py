"""Where a loss term puts its weight among the pixels of its per-pixel loss map.

`worst_share` is the share of |d term / d L_i| (L the loss map, from `torch.autograd.grad`) that
falls on the `fraction` of valid pixels with the highest loss L_i, pooled over the batch. A plain
mean gives every valid pixel the same weight 1/N, so its share is the fraction itself (0.1 for the
worst decile) whatever the map; a geometric mean G = exp(mean log L) gives pixel i the weight
G / (N L_i), which falls as its loss rises, so its share is (sum over the worst of 1/L_i) / (sum of
1/L_i), below the fraction.
"""
from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["worst_share", "worst_count"]


def worst_count(n_valid: int, fraction: float) -> int:
    """How many pixels the worst `fraction` of `n_valid` is: the nearest whole number, at least 1."""
    return max(1, min(n_valid, int(round(fraction * n_valid))))


def worst_share(grad: Tensor, loss_map: Tensor, valid: Tensor, fraction: float = 0.1) -> Tensor:
    """Share of sum |grad| over the valid pixels that lies on the `fraction` of them with the
    highest `loss_map` (ties broken by `torch.topk`); NaN when no valid pixel has any gradient."""
    mask = valid.bool().expand_as(loss_map)
    g = grad.detach().abs()[mask].float()
    loss = loss_map.detach()[mask].float()
    if loss.numel() == 0:
        return loss_map.new_tensor(float("nan"))
    top = loss.topk(worst_count(loss.numel(), fraction)).indices
    total = g.sum()
    return torch.where(total > 0, g[top].sum() / total, total.new_tensor(float("nan")))
