"""Depth: one scalar per pixel (metres), raw head output, L1 over valid pixels (label 0 = invalid)."""
from __future__ import annotations

from typing import Dict

import numpy as np
import torch
from torch import Tensor
from torchmetrics import Metric

from lhl.core.registry import TASKS
from lhl.tasks.base import LabelFacts, TaskSpec
from lhl.tasks.metrics import check_reduction


def depth_valid(label: Tensor) -> Tensor:
    """[B, 1, H, W] depth -> [B, H, W]: pixels with a measured depth (0 marks a missing one)."""
    return (label != 0).all(dim=1)


class DepthMetric(Metric):
    """Mean absolute and relative depth error over valid pixels (label 0 = invalid).

    `abs`/`rel` hold error sums and `count` the number of pixels (``"global"``) or of the per-batch
    means and the number of batches (``"mtan"``); both divide the same way in `compute`.
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(self, reduction: str = "global", **kwargs):
        super().__init__(**kwargs)
        self.reduction = check_reduction(reduction)
        self.add_state("abs", default=torch.zeros(()), dist_reduce_fx="sum")
        self.add_state("rel", default=torch.zeros(()), dist_reduce_fx="sum")
        self.add_state("count", default=torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    def update(self, pred: Tensor, target: Tensor) -> None:
        """`pred`, `target`: [B, 1, H, W] depth; label 0 marks invalid pixels."""
        pred, target = pred.float(), target.float()
        valid = depth_valid(target).unsqueeze(1)
        err = (pred - target).abs() * valid
        rel = err / torch.where(valid, target, torch.ones_like(target))
        n = valid.sum()
        if self.reduction == "global":
            self.abs += err.sum()
            self.rel += rel.sum()
            self.count += n
        else:
            self.abs += err.sum() / n.clamp_min(1)
            self.rel += rel.sum() / n.clamp_min(1)
            self.count += (n > 0).long()

    def compute(self) -> Dict[str, Tensor]:
        return {"abs_err": self.abs / self.count, "rel_err": self.rel / self.count}


@TASKS.register("depth")
class DepthTask(TaskSpec):
    kind = "depth"
    metric_directions = {"abs_err": False, "rel_err": False}
    main_metric = "abs_err"
    array_channels = 1
    uses_facts = ("depth_inverse",)

    def activate(self, raw: Tensor) -> Tensor:
        return raw

    def valid_mask(self, label: Tensor) -> Tensor:
        return depth_valid(label)

    def pixel_loss(self, pred: Tensor, target: Tensor):
        valid = depth_valid(target)
        return (pred - target).abs().sum(dim=1) * valid, valid

    def pseudo_label(self, teacher_pred: Tensor) -> Tensor:
        return teacher_pred.detach()

    def zoom_label(self, label: Tensor, scale: Tensor, facts: LabelFacts) -> Tensor:
        """Zooming in brings the scene closer: depth divided by the scale, inverse depth multiplied."""
        s = scale.to(label.dtype).view(-1, 1, 1, 1)
        return label * s if facts.depth_inverse else label / s

    def example_label(self, batch: int, height: int, width: int, generator: torch.Generator) -> Tensor:
        return 0.1 + 9.9 * torch.rand(batch, 1, height, width, generator=generator)

    @classmethod
    def label_from_array(cls, array: np.ndarray) -> Tensor:
        a = array.astype(np.float32, copy=False)
        return torch.from_numpy(np.ascontiguousarray(a.reshape(1, *a.shape[:2])))

    def metric(self, reduction: str = "global"):
        return DepthMetric(reduction=reduction)

    def colourise(self, x: Tensor, is_label: bool = False) -> np.ndarray:
        import matplotlib

        d = x[0].detach().float().cpu().numpy()
        valid = depth_valid(x[None])[0].cpu().numpy() if is_label else np.isfinite(d)
        lo, hi = (np.percentile(d[valid], [2, 98]) if valid.any() else (0.0, 1.0))
        v = np.clip((d - lo) / max(hi - lo, 1e-6), 0, 1)
        rgb = (matplotlib.colormaps["viridis"](v)[..., :3] * 255).astype(np.uint8)
        rgb[~valid] = 0
        return rgb
