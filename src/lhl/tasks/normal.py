"""Surface normals: unit 3-vectors, L2-normalised head, 1 - cos over valid pixels (all-zero label = invalid)."""
from __future__ import annotations

from typing import Dict

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import Metric

from lhl.core.registry import TASKS
from lhl.tasks.base import LabelFacts, TaskSpec
from lhl.tasks.metrics import check_reduction


def normal_valid(label: Tensor) -> Tensor:
    """[B, 3, H, W] normals -> [B, H, W]: pixels whose label is not the all-zero vector."""
    return label.abs().sum(dim=1) != 0


def release_normal_valid(label: Tensor) -> Tensor:
    """The release's normal mask (MTAN `eval_task`, HAD `weight_fit`): label components summing to
    non-zero, so a vector like (1, -1, 0) counts as invalid. Only for reproducing the release."""
    return label.sum(dim=1) != 0


#: width of a normal-angle histogram bin (degrees) and the number of bins over [0, 180]
ANGLE_BIN_DEG = 0.01
ANGLE_BINS = 18000
ANGLE_THRESHOLDS = (11.25, 22.5, 30.0)
NORMAL_KEYS = ("mean", "median", "within_11.25", "within_22.5", "within_30")


def normal_angles(pred: Tensor, target: Tensor) -> Tensor:
    """Per-pixel angle [B, H, W] in degrees between predicted and label normals (cos clamped)."""
    cos = (pred.float() * target.float()).sum(dim=1).clamp(-1.0, 1.0)
    return torch.rad2deg(torch.acos(cos))


class NormalMetric(Metric):
    """Mean and median angular error (degrees) and % of pixels within 11.25 / 22.5 / 30 degrees.

    ``"global"``: exact sums and counts over all valid pixels (all-zero label = invalid); the
    median is the lower median (as `torch.median`) read from a histogram of 0.01-degree bins, at
    the bin centre, so it is within 0.005 degrees of the exact value and stays DDP-exact.
    ``"mtan"``: the release's per-batch values averaged over batches, with the release's own mask
    (`release_normal_valid`: label components summing to non-zero).
    """

    is_differentiable = False
    full_state_update = False

    def __init__(self, reduction: str = "global", **kwargs):
        super().__init__(**kwargs)
        self.reduction = check_reduction(reduction)
        if self.reduction == "global":
            self.add_state("angle_sum", default=torch.zeros(()), dist_reduce_fx="sum")
            self.add_state("count", default=torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")
            self.add_state("within", default=torch.zeros(len(ANGLE_THRESHOLDS), dtype=torch.long), dist_reduce_fx="sum")
            self.add_state("hist", default=torch.zeros(ANGLE_BINS, dtype=torch.long), dist_reduce_fx="sum")
        else:
            self.add_state("batch_sums", default=torch.zeros(len(NORMAL_KEYS)), dist_reduce_fx="sum")
            self.add_state("batches", default=torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    def update(self, pred: Tensor, target: Tensor) -> None:
        """`pred`: unit normals [B, 3, H, W]; `target`: label normals [B, 3, H, W]."""
        angle = normal_angles(pred, target)
        thresholds = torch.tensor(ANGLE_THRESHOLDS, device=angle.device, dtype=angle.dtype).view(-1, 1)
        if self.reduction == "global":
            valid = normal_valid(target).flatten()
            angle = angle.flatten()
            self.angle_sum += (angle * valid).sum()
            self.count += valid.sum()
            self.within += ((angle < thresholds) & valid).sum(dim=1)
            bins = (angle / ANGLE_BIN_DEG).long().clamp(0, ANGLE_BINS - 1)
            bins = torch.where(valid, bins, torch.full_like(bins, ANGLE_BINS))
            self.hist += torch.bincount(bins, minlength=ANGLE_BINS + 1)[:ANGLE_BINS]
        else:
            valid = release_normal_valid(target).flatten()
            angle = angle.flatten()
            n = valid.sum()
            denom = n.clamp_min(1).float()
            mean = (angle * valid).sum() / denom
            within = ((angle < thresholds) & valid).sum(dim=1).float() * 100.0 / denom
            ordered = torch.where(valid, angle, torch.full_like(angle, float("inf"))).sort().values
            median = ordered[((n - 1) // 2).clamp_min(0)].float()
            values = torch.cat([mean.view(1), median.view(1), within])
            self.batch_sums += values * (n > 0)
            self.batches += (n > 0).long()

    def compute(self) -> Dict[str, Tensor]:
        if self.reduction == "mtan":
            values = self.batch_sums / self.batches
            return dict(zip(NORMAL_KEYS, values))
        n = self.count
        cum = self.hist.cumsum(0)
        median_bin = torch.searchsorted(cum, ((n - 1) // 2 + 1).view(1)).squeeze(0)
        median = (median_bin.float() + 0.5) * ANGLE_BIN_DEG
        if n == 0:
            median = torch.full_like(median, float("nan"))
        values = [self.angle_sum / n, median, *(self.within.float() * 100.0 / n)]
        return dict(zip(NORMAL_KEYS, values))


@TASKS.register("normal")
class NormalTask(TaskSpec):
    kind = "normal"
    metric_directions = {
        "mean": False,
        "median": False,
        "within_11.25": True,
        "within_22.5": True,
        "within_30": True,
    }
    main_metric = "mean"
    array_channels = 3
    uses_facts = ("normal_x_channel",)

    def activate(self, raw: Tensor) -> Tensor:
        return F.normalize(raw, p=2, dim=1)

    def valid_mask(self, label: Tensor) -> Tensor:
        return normal_valid(label)

    def pixel_loss(self, pred: Tensor, target: Tensor):
        valid = normal_valid(target)
        return (1.0 - (pred * target).sum(dim=1)) * valid, valid

    def pseudo_label(self, teacher_pred: Tensor) -> Tensor:
        return teacher_pred.detach()

    def flip_label(self, label: Tensor, flip: Tensor, facts: LabelFacts) -> Tensor:
        """Mirrored samples also point the other way in x: their x channel is negated."""
        sign = torch.ones(label.shape[0], label.shape[1], 1, 1, dtype=label.dtype, device=label.device)
        sign[:, facts.normal_x_channel] = torch.where(flip, -1.0, 1.0).to(label.dtype)[:, None, None]
        return super().flip_label(label, flip, facts) * sign

    def example_label(self, batch: int, height: int, width: int, generator: torch.Generator) -> Tensor:
        return F.normalize(torch.randn(batch, 3, height, width, generator=generator), dim=1)

    @classmethod
    def label_from_array(cls, array: np.ndarray) -> Tensor:
        return torch.from_numpy(np.ascontiguousarray(array.astype(np.float32, copy=False).transpose(2, 0, 1)))

    def metric(self, reduction: str = "global"):
        return NormalMetric(reduction=reduction)

    def colourise(self, x: Tensor, is_label: bool = False) -> np.ndarray:
        n = x.detach().float().cpu().numpy().transpose(1, 2, 0)
        rgb = ((n + 1.0) * 0.5 * 255).clip(0, 255).astype(np.uint8)
        rgb[~normal_valid(x[None])[0].cpu().numpy()] = 0
        return rgb
