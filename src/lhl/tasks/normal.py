"""Surface normals: unit 3-vectors, L2-normalised head, 1 - cos over valid pixels (all-zero label = invalid)."""
from __future__ import annotations

import numpy as np
import torch.nn.functional as F
from torch import Tensor

from lhl.core.registry import TASKS
from lhl.tasks.base import TaskSpec


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

    def activate(self, raw: Tensor) -> Tensor:
        return F.normalize(raw, p=2, dim=1)

    def pixel_loss(self, pred: Tensor, target: Tensor):
        valid = target.abs().sum(dim=1) != 0
        return 1.0 - (pred * target).sum(dim=1), valid

    def pseudo_label(self, teacher_pred: Tensor) -> Tensor:
        return teacher_pred.detach()

    def metric(self, reduction: str = "global"):
        from lhl.tasks.metrics import NormalMetric

        return NormalMetric(reduction=reduction)

    def colourise(self, x: Tensor, is_label: bool = False) -> np.ndarray:
        n = x.detach().float().cpu().numpy().transpose(1, 2, 0)
        rgb = ((n + 1.0) * 0.5 * 255).clip(0, 255).astype(np.uint8)
        rgb[np.abs(n).sum(-1) == 0] = 0
        return rgb
