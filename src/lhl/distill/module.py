"""LightningModule training one segmenter, alone or distilled from a frozen teacher.

The teacher is held outside the module tree (out of `state_dict`, the optimizer and DDP), kept in
eval mode, moved to the student's device at fit / validate start and run under `no_grad`. The
distiller (and so HeteroAKD's projectors, the teacher's included) is a submodule: it is trained
and checkpointed with the student.
"""
from __future__ import annotations

from typing import Dict, Optional

import lightning.pytorch as pl
import torch
from torch import Tensor, nn

from lhl.models.frozen import hold_outside
from lhl.tasks.metrics import SemanticMetric


class DistillModule(pl.LightningModule):
    """`student` learns from labels through `distiller`; `teacher` (optional) feeds it targets."""

    def __init__(
        self, student: nn.Module, distiller: nn.Module, teacher: Optional[nn.Module] = None,
        lr: float = 1e-3, weight_decay: float = 1e-5, optimizer: str = "adamw",
        max_steps: int = 0,
    ):
        super().__init__()
        if getattr(distiller, "needs_teacher", False) and teacher is None:
            raise ValueError(f"{type(distiller).__name__} needs a teacher; none was given")
        self.student, self.distiller = student, distiller
        hold_outside(self, "teacher", teacher.eval().requires_grad_(False) if teacher is not None else None)
        self.lr, self.weight_decay, self.optimizer_name = float(lr), float(weight_decay), optimizer
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
            with torch.no_grad():
                teacher_out = self.teacher(image)
        terms = self.distiller(out, teacher_out, target)
        self.log_dict({f"train/{k}": v.detach() for k, v in terms.items()}, prog_bar=False,
                      batch_size=image.shape[0])
        return terms["loss"]

    def validation_step(self, batch: Dict, batch_idx: int) -> None:
        self.val_metric.update(self.student(batch["image"])["logits"], batch["semantic"])

    def on_validation_epoch_end(self) -> None:
        values = self.val_metric.compute()
        self.log_dict({f"val/{k}": v for k, v in values.items()})
        self.val_metric.reset()

    def configure_optimizers(self):
        params = [p for p in self.parameters() if p.requires_grad]
        if self.optimizer_name == "adamw":
            opt = torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)
        elif self.optimizer_name == "adam":
            opt = torch.optim.Adam(params, lr=self.lr, weight_decay=self.weight_decay)
        elif self.optimizer_name == "sgd":
            opt = torch.optim.SGD(params, lr=self.lr, momentum=0.9, weight_decay=self.weight_decay)
        else:
            raise ValueError(f"train.optimizer='{self.optimizer_name}': choose adamw, adam or sgd")
        if self.max_steps <= 0:
            return opt
        sched = torch.optim.lr_scheduler.PolynomialLR(opt, total_iters=self.max_steps, power=0.9)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
