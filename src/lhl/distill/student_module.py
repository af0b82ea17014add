"""LightningModule training one segmenter, alone or distilled from a frozen teacher.

The teacher is held outside the module tree (out of `state_dict`, the optimizer and DDP), kept in
eval mode, moved to the student's device at fit / validate start and run under `inference_mode`
(its outputs cloned into ordinary tensors, which can be saved for backward). The distiller (and
so HeteroAKD's projectors, the teacher's included) is a submodule: it is trained and checkpointed
with the student.
"""
from __future__ import annotations

from typing import Any, Dict, Optional

import lightning.pytorch as pl
import torch
from torch import Tensor, nn

from lhl.core.optim import build_optimizer
from lhl.models.frozen import hold_outside
from lhl.tasks.semantic import SemanticMetric


class DistillModule(pl.LightningModule):
    """`student` learns from labels through `distiller`; `teacher` (optional) feeds it targets."""

    def __init__(
        self, student: nn.Module, distiller: nn.Module, teacher: Optional[nn.Module] = None,
        lr: float = 1e-3, weight_decay: float = 1e-5, optimizer: str = "adamw",
        max_steps: int = 0, momentum: float = 0.9,
    ):
        super().__init__()
        if getattr(distiller, "needs_teacher", False) and teacher is None:
            raise ValueError(f"{type(distiller).__name__} needs a teacher; none was given")
        self.student, self.distiller = student, distiller
        hold_outside(self, "teacher", teacher.eval().requires_grad_(False) if teacher is not None else None)
        self.lr, self.weight_decay, self.optimizer_name = float(lr), float(weight_decay), optimizer
        self.momentum = float(momentum)
        self.max_steps = int(max_steps)
        self.val_metric = SemanticMetric(student.num_classes)

    def forward(self, x: Tensor) -> Dict:
        return self.student(x)

    def _sync_teacher(self) -> None:
        if self.teacher is not None:
            self.teacher.to(self.device).eval()

    def on_fit_start(self) -> None:
        self._sync_teacher()

    def on_validation_start(self) -> None:
        self._sync_teacher()

    def training_step(self, batch: Dict, batch_idx: int) -> Tensor:
        image, target = batch["image"], batch["semantic"]
        out = self.student(image)
        teacher_out = None
        if self.teacher is not None and getattr(self.distiller, "needs_teacher", False):
            teacher_out = self.teacher_outputs(image)
        terms = self.distiller(out, teacher_out, target)
        self.log_dict({f"train/{k}": v.detach() for k, v in terms.items()}, prog_bar=False,
                      batch_size=image.shape[0])
        return terms["loss"]

    def teacher_outputs(self, image: Tensor) -> Dict:
        """The teacher's outputs under `inference_mode` (no autograd bookkeeping), then copied once
        into ordinary tensors: inference tensors cannot be saved for backward."""
        with torch.inference_mode():
            out = self.teacher(image)
        return _clone(out)

    def validation_step(self, batch: Dict, batch_idx: int) -> None:
        self.val_metric.update(self.student(batch["image"])["logits"], batch["semantic"])

    def on_validation_epoch_end(self) -> None:
        values = self.val_metric.compute()
        self.log_dict({f"val/{k}": v for k, v in values.items()})
        self.val_metric.reset()

    def configure_optimizers(self):
        opt = build_optimizer(self.parameters(), self.optimizer_name, self.lr, self.weight_decay, self.momentum)
        if self.max_steps <= 0:
            return opt
        sched = torch.optim.lr_scheduler.PolynomialLR(opt, total_iters=self.max_steps, power=0.9)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def _clone(out: Any) -> Any:
    """Tensors of a (nested) dict / list of outputs, cloned."""
    if isinstance(out, Tensor):
        return out.clone()
    if isinstance(out, dict):
        return {k: _clone(v) for k, v in out.items()}
    if isinstance(out, (list, tuple)):
        return type(out)(_clone(v) for v in out)
    return out
