"""TaskSpec: everything the engine needs to know about one output structure.

A task type (classes, scalars, unit vectors, ...) is one file in this package plus a
`TASKS.register` entry. The engine, the methods, the augmentation, the data readers and the plots
only talk to this interface; no other module branches on a task's kind.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import numpy as np
import torch
from torch import Tensor


@dataclass(frozen=True)
class LabelFacts:
    """What a dataset says about its labels that moving them needs: which stored normal channel
    is x (negated by a horizontal flip) and whether depth is inverse (disparity grows on zoom)."""

    normal_x_channel: int = 0  # MTAN's layout: normals stored (x, y, z)
    depth_inverse: bool = False


class TaskSpec:
    """One dense-prediction task: its head width, activation, validity rule, loss, pseudo-label,
    metrics, label transforms and display.

    Shapes: a head's raw output is [B, C, H, W]; `activate` turns it into the prediction the
    losses and metrics consume (semantic: log-probabilities; depth: raw; normal: unit vectors).
    Labels come as in the MTAN layout: semantic [B, H, W] long (-1 ignore), depth [B, 1, H, W]
    (0 invalid), normal [B, 3, H, W] (all-zero invalid), scalar [B, C, H, W] (NaN invalid).
    """

    kind: str = "base"
    #: metric name -> True when higher is better
    metric_directions: Dict[str, bool] = {}
    main_metric: str = ""
    #: the `LabelFacts` fields this kind's label transforms read (a dataset must state them)
    uses_facts: Tuple[str, ...] = ()
    #: channels on the last axis of an on-disk H x W x C label array (None: any; 2-D counts as 1)
    array_channels: Optional[int] = None
    #: every output channel is a class, named by the dataset's `CLASSES` when it has as many
    class_channels: bool = False

    def __init__(self, name: str, channels: int):
        self.name = name
        self.channels = int(channels)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, channels={self.channels})"

    # --- prediction -------------------------------------------------------------------------
    def activate(self, raw: Tensor) -> Tensor:
        raise NotImplementedError

    # --- supervision ------------------------------------------------------------------------
    def valid_mask(self, label: Tensor) -> Tensor:
        """Boolean [B, H, W]: the pixels this label supervises (THE validity rule of the kind)."""
        raise NotImplementedError

    def pixel_loss(self, pred: Tensor, target: Tensor) -> Tuple[Tensor, Tensor]:
        """Per-pixel loss map [B, H, W], zero on invalid pixels, and `valid_mask(target)`."""
        raise NotImplementedError

    def loss(self, pred: Tensor, target: Tensor) -> Tensor:
        """The supervised loss of the release (MTAN `model_fit`): mean over valid pixels."""
        loss_map, valid = self.pixel_loss(pred, target)
        n = valid.sum()
        return (loss_map * valid).sum() / n.clamp_min(1)

    def pseudo_label(self, teacher_pred: Tensor) -> Tensor:
        """Turn a teacher's activated output into a label in this task's label format."""
        raise NotImplementedError

    # --- labels: augmentation, made-up examples, files ------------------------------------------
    def zoom_label(self, label: Tensor, scale: Tensor, facts: LabelFacts) -> Tensor:
        """Label values after its pixels were resampled for a zoom-in by `scale` [B] (the crop
        itself is the augmentation's); most kinds keep their values."""
        return label

    def flip_label(self, label: Tensor, flip: Tensor, facts: LabelFacts) -> Tensor:
        """The label with the samples where `flip` [B] is True mirrored horizontally."""
        mask = flip.view(-1, *([1] * (label.dim() - 1)))
        return torch.where(mask, label.flip(-1), label)

    def example_label(self, batch: int, height: int, width: int, generator: torch.Generator) -> Tensor:
        """A made-up label, valid at every pixel, for benchmarks and tests."""
        raise NotImplementedError

    @classmethod
    def label_from_array(cls, array: np.ndarray) -> Tensor:
        """One sample's label from an on-disk H x W [x C] array, in this task's label format."""
        raise NotImplementedError

    # --- evaluation and display ---------------------------------------------------------------
    def metric(self, reduction: str = "global"):
        """A fresh torchmetrics Metric whose compute() returns {metric_name: value}."""
        raise NotImplementedError

    def colourise(self, x: Tensor, is_label: bool = False) -> np.ndarray:
        """One sample ([C, H, W] prediction or label) as an RGB uint8 image for galleries."""
        raise NotImplementedError
