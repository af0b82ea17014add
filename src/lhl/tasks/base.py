"""TaskSpec: everything the engine needs to know about one output structure.

A task type (classes, scalars, unit vectors, ...) is one file in this package plus a
`TASKS.register` entry. The engine, the methods and the plots only talk to this interface.
"""
from __future__ import annotations

from typing import Dict, Tuple

import numpy as np
from torch import Tensor


class TaskSpec:
    """One dense-prediction task: its head width, activation, loss, pseudo-label and metrics.

    Shapes: a head's raw output is [B, C, H, W]; `activate` turns it into the prediction the
    losses and metrics consume (semantic: log-probabilities; depth: raw; normal: unit vectors).
    Labels come as in the MTAN layout: semantic [B, H, W] long (-1 ignore), depth [B, 1, H, W]
    (0 invalid), normal [B, 3, H, W] (all-zero invalid).
    """

    kind: str = "base"
    #: metric name -> True when higher is better
    metric_directions: Dict[str, bool] = {}
    main_metric: str = ""

    def __init__(self, name: str, channels: int):
        self.name = name
        self.channels = int(channels)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, channels={self.channels})"

    # --- prediction -------------------------------------------------------------------------
    def activate(self, raw: Tensor) -> Tensor:
        raise NotImplementedError

    # --- supervision ------------------------------------------------------------------------
    def pixel_loss(self, pred: Tensor, target: Tensor) -> Tuple[Tensor, Tensor]:
        """Per-pixel loss map [B, H, W] and the boolean valid mask [B, H, W]."""
        raise NotImplementedError

    def loss(self, pred: Tensor, target: Tensor) -> Tensor:
        """The supervised loss of the release (MTAN `model_fit`): mean over valid pixels."""
        loss_map, valid = self.pixel_loss(pred, target)
        n = valid.sum()
        return (loss_map * valid).sum() / n.clamp_min(1)

    def pseudo_label(self, teacher_pred: Tensor) -> Tensor:
        """Turn a teacher's activated output into a label in this task's label format."""
        raise NotImplementedError

    # --- evaluation and display ---------------------------------------------------------------
    def metric(self, reduction: str = "global"):
        """A fresh torchmetrics Metric whose compute() returns {metric_name: value}."""
        raise NotImplementedError

    def colourise(self, x: Tensor, is_label: bool = False) -> np.ndarray:
        """One sample ([C, H, W] prediction or label) as an RGB uint8 image for galleries."""
        raise NotImplementedError
