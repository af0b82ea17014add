"""Semantic segmentation: C classes, log-softmax head, NLL with ignore index -1."""
from __future__ import annotations

from typing import Dict, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics.classification import MulticlassConfusionMatrix

from lhl.core.registry import TASKS
from lhl.tasks.base import TaskSpec
from lhl.tasks.metrics import check_reduction

IGNORE_INDEX = -1


def valid_classes(label: Tensor, num_classes: int) -> Tensor:
    """Pixels whose label is a class id in [0, C); -1, 255 and any other value are ignored."""
    return (label >= 0) & (label < num_classes)


def masked_nll(log_probs: Tensor, label: Tensor) -> Tuple[Tensor, Tensor]:
    """Per-pixel NLL [B, H, W] of log-probabilities [B, C, H, W] at `label` [B, H, W], zero on
    ignored pixels, and the valid mask. A gather and a mask, not `F.nll_loss(ignore_index=...)`,
    which has no deterministic CUDA kernel."""
    valid = valid_classes(label, log_probs.shape[1])
    safe = torch.where(valid, label, torch.zeros_like(label)).long()
    nll = -log_probs.gather(1, safe.unsqueeze(1)).squeeze(1)
    return nll * valid, valid


def _palette(n: int) -> np.ndarray:
    """The PASCAL VOC colour map: distinct, stable colours for class ids."""
    cmap = np.zeros((n, 3), dtype=np.uint8)
    for i in range(n):
        c, r, g, b = i + 1, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        cmap[i] = (r, g, b)
    return cmap


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
        self.reduction = check_reduction(reduction)

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


@TASKS.register("semantic")
class SemanticTask(TaskSpec):
    kind = "semantic"
    metric_directions = {"miou": True, "pixacc": True}
    main_metric = "miou"
    array_channels = 1
    class_channels = True

    def activate(self, raw: Tensor) -> Tensor:
        return F.log_softmax(raw, dim=1)

    def valid_mask(self, label: Tensor) -> Tensor:
        return valid_classes(label, self.channels)

    def pixel_loss(self, pred: Tensor, target: Tensor):
        return masked_nll(pred, target)

    def pseudo_label(self, teacher_pred: Tensor) -> Tensor:
        return teacher_pred.argmax(dim=1)

    def example_label(self, batch: int, height: int, width: int, generator: torch.Generator) -> Tensor:
        return torch.randint(0, self.channels, (batch, height, width), generator=generator)

    @classmethod
    def label_from_array(cls, array: np.ndarray) -> Tensor:
        """Class ids from an H x W [x 1] array (floats rounded); every negative id becomes -1."""
        a = np.squeeze(array, axis=-1) if array.ndim == 3 else array
        if np.issubdtype(a.dtype, np.floating):
            a = np.rint(a)
        lab = torch.from_numpy(a.astype(np.int64))
        return lab.clamp_min(IGNORE_INDEX)

    def metric(self, reduction: str = "global"):
        return SemanticMetric(self.channels, ignore_index=IGNORE_INDEX, reduction=reduction)

    def colourise(self, x: Tensor, is_label: bool = False) -> np.ndarray:
        lab = x if is_label else x.argmax(dim=0)
        lab = lab.detach().cpu().numpy().astype(np.int64)
        rgb = _palette(self.channels)[np.clip(lab, 0, self.channels - 1)]
        rgb[~valid_classes(lab, self.channels)] = 0
        return rgb
