"""Depth: one scalar per pixel (metres), raw head output, L1 over valid pixels (label 0 = invalid)."""
from __future__ import annotations

import numpy as np
from torch import Tensor

from lhl.core.registry import TASKS
from lhl.tasks.base import TaskSpec


@TASKS.register("depth")
class DepthTask(TaskSpec):
    kind = "depth"
    metric_directions = {"abs_err": False, "rel_err": False}
    main_metric = "abs_err"

    def activate(self, raw: Tensor) -> Tensor:
        return raw

    def pixel_loss(self, pred: Tensor, target: Tensor):
        valid = target.sum(dim=1) != 0
        return (pred - target).abs().sum(dim=1), valid

    def pseudo_label(self, teacher_pred: Tensor) -> Tensor:
        return teacher_pred.detach()

    def metric(self, reduction: str = "global"):
        from lhl.tasks.metrics import DepthMetric

        return DepthMetric(reduction=reduction)

    def colourise(self, x: Tensor, is_label: bool = False) -> np.ndarray:
        import matplotlib

        d = x[0].detach().float().cpu().numpy()
        valid = d > 0 if is_label else np.isfinite(d)
        lo, hi = (np.percentile(d[valid], [2, 98]) if valid.any() else (0.0, 1.0))
        v = np.clip((d - lo) / max(hi - lo, 1e-6), 0, 1)
        rgb = (matplotlib.colormaps["viridis"](v)[..., :3] * 255).astype(np.uint8)
        rgb[~valid] = 0
        return rgb
