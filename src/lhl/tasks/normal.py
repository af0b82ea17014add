"""Surface normals: unit 3-vectors, L2-normalised head, 1 - cos over valid pixels (all-zero label = invalid)."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from lhl.core.registry import TASKS
from lhl.tasks.base import LabelFacts, TaskSpec


def normal_valid(label: Tensor) -> Tensor:
    """[B, 3, H, W] normals -> [B, H, W]: pixels whose label is not the all-zero vector."""
    return label.abs().sum(dim=1) != 0


def release_normal_valid(label: Tensor) -> Tensor:
    """The release's normal mask (MTAN `eval_task`, HAD `weight_fit`): label components summing to
    non-zero, so a vector like (1, -1, 0) counts as invalid. Only for reproducing the release."""
    return label.sum(dim=1) != 0


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
        from lhl.tasks.metrics import NormalMetric

        return NormalMetric(reduction=reduction)

    def colourise(self, x: Tensor, is_label: bool = False) -> np.ndarray:
        n = x.detach().float().cpu().numpy().transpose(1, 2, 0)
        rgb = ((n + 1.0) * 0.5 * 255).clip(0, 255).astype(np.uint8)
        rgb[~normal_valid(x[None])[0].cpu().numpy()] = 0
        return rgb
