"""Task metrics for dense prediction as torchmetrics Metrics with sum-reduced (DDP-exact) states.

Every metric takes the *activated* prediction and the label in the MTAN layout and returns a
`{name: 0-d tensor}` dict from `compute()`. Two reductions:

- ``"global"`` (default): exact dataset-level pixel reductions (one confusion matrix, per-pixel
  means over all valid pixels, a 0.01-degree angle histogram for the median). Under DDP the
  states are summed across ranks, so the result equals a single-device evaluation.
- ``"mtan"``: the official HAD release (MTAN-style `eval_task`): semantic metrics from one
  confusion matrix over the whole set (the release does not average those per batch), depth and
  normal metrics computed per batch and averaged over batches with equal weight, whatever the
  number of valid pixels in each batch; the normal median is the per-batch `torch.median` (lower
  median). Batches without a valid pixel are skipped (the release would produce NaN).

Valid pixels follow each task type's own rule (`valid_classes`, `depth_valid`, `normal_valid`); the
one exception is ``"mtan"``'s normal mask, the release's `release_normal_valid`.

Units: mIoU and pixel accuracy are fractions in [0, 1]; depth errors are in label units (metres)
and relative; normal angles are in degrees and the within-threshold scores are percentages
(0-100) in both reductions (the release's fractions times 100).
"""
from __future__ import annotations

from typing import Dict

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.classification import MulticlassConfusionMatrix

from lhl.tasks.depth import depth_valid
from lhl.tasks.normal import normal_valid, release_normal_valid
from lhl.tasks.semantic import valid_classes

REDUCTIONS = ("global", "mtan")
#: width of a normal-angle histogram bin (degrees) and the number of bins over [0, 180]
ANGLE_BIN_DEG = 0.01
ANGLE_BINS = 18000
ANGLE_THRESHOLDS = (11.25, 22.5, 30.0)
NORMAL_KEYS = ("mean", "median", "within_11.25", "within_22.5", "within_30")


def _check_reduction(reduction: str) -> str:
    if reduction not in REDUCTIONS:
        raise ValueError(f"metric reduction must be one of {REDUCTIONS}, got {reduction!r}")
    return reduction


class SemanticMetric(MulticlassConfusionMatrix):
    """mIoU and pixel accuracy (fractions) from one confusion matrix summed over all batches.

    Labels outside [0, num_classes) (-1, 255) and `ignore_index` are ignored. mIoU averages the
    IoU of the classes present in the prediction or the label, as
    `MulticlassJaccardIndex(average="macro", ignore_index=...)`. The release also accumulates one
    matrix over the set, so ``"mtan"`` gives the same numbers (the release's plain mean turns NaN
    when a class is absent from both; this keeps the mean over present classes).
    """

    def __init__(self, num_classes: int, ignore_index: int = -1, reduction: str = "global", **kwargs):
        super().__init__(num_classes=num_classes, ignore_index=ignore_index, validate_args=False, **kwargs)
        self.reduction = _check_reduction(reduction)

    def update(self, pred: Tensor, target: Tensor) -> None:
        """`pred`: scores [B, C, H, W] (argmax taken) or class ids [B, H, W]; `target`: [B, H, W]."""
        target = target.long()
        valid = valid_classes(target, self.num_classes)
        super().update(pred, torch.where(valid, target, torch.full_like(target, self.ignore_index)))

    def compute(self) -> Dict[str, Tensor]:
        cm = self.confmat.float()
        iou = _class_iou(cm, self.ignore_index)
        present = ~iou.isnan()
        miou = iou[present].sum() / present.sum()
        pixacc = cm.diagonal().sum() / cm.sum()
        return {"miou": miou, "pixacc": pixacc}

    def details(self) -> Dict[str, list]:
        """Per-class results beside `compute()`'s (not metrics: Δ and ranks never read them):
        `class_iou`, one IoU per class id, NaN for a class absent from both prediction and label
        (the classes mIoU leaves out). Synced across ranks as `compute()` is."""
        with self.sync_context(should_sync=self._to_sync, should_unsync=self._should_unsync):
            cm = self.confmat.float()
        return {"class_iou": _class_iou(cm, self.ignore_index).tolist()}


def _class_iou(cm: Tensor, ignore_index: int) -> Tensor:
    """IoU of every class from a confusion matrix [C, C] (rows: label); NaN where the class is in
    neither prediction nor label, or is `ignore_index`."""
    tp = cm.diagonal()
    union = cm.sum(0) + cm.sum(1) - tp
    iou = tp / union.clamp_min(1)
    absent = union == 0
    if 0 <= ignore_index < cm.shape[0]:
        absent[ignore_index] = True
    return iou.masked_fill(absent, float("nan"))


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
        self.reduction = _check_reduction(reduction)
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
        self.reduction = _check_reduction(reduction)
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
