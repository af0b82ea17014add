"""Generic per-pixel scalar maps (Taskonomy edge_texture, keypoints2d): raw head, L1 loss, mean abs error.

Every pixel is supervised; a NaN label marks a pixel as invalid (no sentinel value, since 0 is a
legitimate edge / keypoint strength).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor
from torchmetrics import Metric

from lhl.core.registry import TASKS
from lhl.tasks.base import TaskSpec
from lhl.tasks.metrics import check_reduction


def scalar_valid(label: Tensor) -> Tensor:
    """[B, C, H, W] -> [B, H, W]: pixels with no NaN in any channel (NaN marks a missing value)."""
    return ~torch.isnan(label).any(dim=1)


class ScalarMetric(Metric):
    """Mean absolute error of a scalar map over the channels of valid pixels (`scalar_valid`).

    `reduction="global"`: one mean over every valid pixel of the dataset (DDP-exact: sum states).
    `reduction="mtan"`: the release's convention, the mean over batches of each batch's mean.
    """

    full_state_update = False
    higher_is_better = False

    def __init__(self, reduction: str = "global", **kwargs):
        super().__init__(**kwargs)
        self.reduction = check_reduction(reduction)
        self.add_state("abs_sum", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, pred: Tensor, target: Tensor) -> None:
        valid = scalar_valid(target).unsqueeze(1).expand_as(target)
        err = torch.where(valid, (pred - target).abs(), torch.zeros_like(pred)).double()
        s, n = err.sum(), valid.sum().double()
        if self.reduction == "global":
            self.abs_sum += s
            self.count += n
        elif n > 0:
            self.abs_sum += s / n
            self.count += 1.0

    def compute(self):
        return {"abs_err": (self.abs_sum / self.count.clamp_min(1.0)).float()}


@TASKS.register("scalar")
class ScalarTask(TaskSpec):
    """A dense scalar regression target with no natural invalid value (edges, keypoint heatmaps)."""

    kind = "scalar"
    metric_directions = {"abs_err": False}
    main_metric = "abs_err"

    def activate(self, raw: Tensor) -> Tensor:
        return raw

    def valid_mask(self, label: Tensor) -> Tensor:
        return scalar_valid(label)

    def pixel_loss(self, pred: Tensor, target: Tensor):
        """L1 summed over channels; NaN labels are zeroed before the difference so that no NaN
        reaches the gradient (a `where` after the difference would still back-propagate it)."""
        valid = scalar_valid(target)
        safe = torch.where(torch.isnan(target), torch.zeros_like(target), target)
        return (pred - safe).abs().sum(dim=1) * valid, valid

    def pseudo_label(self, teacher_pred: Tensor) -> Tensor:
        return teacher_pred.detach()

    def example_label(self, batch: int, height: int, width: int, generator: torch.Generator) -> Tensor:
        return torch.rand(batch, self.channels, height, width, generator=generator)

    @classmethod
    def label_from_array(cls, array: np.ndarray) -> Tensor:
        a = array.astype(np.float32, copy=False)
        a = a[..., None] if a.ndim == 2 else a
        return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))

    def metric(self, reduction: str = "global"):
        return ScalarMetric(reduction=reduction)

    def colourise(self, x: Tensor, is_label: bool = False) -> np.ndarray:
        import matplotlib

        v = x[0].detach().float().cpu().numpy()
        finite = np.isfinite(v)
        lo, hi = (float(v[finite].min()), float(v[finite].max())) if finite.any() else (0.0, 1.0)
        g = np.clip((np.where(finite, v, lo) - lo) / max(hi - lo, 1e-6), 0, 1)
        rgb = (matplotlib.colormaps["gray"](g)[..., :3] * 255).astype(np.uint8)
        rgb[~finite] = 0
        return rgb
