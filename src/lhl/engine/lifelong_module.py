"""The LightningModule of a lifelong run: student forward, teacher forward, method loss, metrics.

The teacher (a frozen copy of the network taken at the phase boundary by the `TeacherSwap`
callback, `lhl.engine.teacher`) is held outside the module tree: it is not in `state_dict`, the
optimiser or DDP, and Lightning's `train()` never reaches it. It is saved and restored explicitly
through the checkpoint hooks.
"""
from __future__ import annotations

from typing import Dict, List, Optional

import lightning.pytorch as pl
import torch
from omegaconf import DictConfig
from torch import Tensor, nn

from lhl.methods.base import Method, Phase
from lhl.models import MultiHeadPredictor
from lhl.models.frozen import freeze_copy, hold_outside
from lhl.tasks import build_task


class LifelongModule(pl.LightningModule):
    """Trains one phase: `phase.tasks` are supervised, `old` tasks are the teacher's."""

    def __init__(
        self, network: MultiHeadPredictor, method: Method, phase: Phase, old: List[str],
        eval_tasks: List[str], train_cfg: DictConfig, eval_reduction: str = "global",
    ):
        super().__init__()
        self.network = network
        self.method = method
        self.phase = phase
        self.old = list(old)
        self.eval_tasks = list(eval_tasks)
        self.train_cfg = train_cfg
        self.metrics = nn.ModuleDict(
            {t: network.specs[t].metric(eval_reduction) for t in self.eval_tasks}
        )
        self.last_eval: Dict[str, Dict[str, float]] = {}
        hold_outside(self, "_student_fn", torch.compile(network) if train_cfg.compile else network)
        self.global_step_offset = 0
        hold_outside(self, "_teacher", None)
        hold_outside(self, "_teacher_fn", None)

    # --- the teacher --------------------------------------------------------------------------
    @property
    def teacher(self) -> Optional[MultiHeadPredictor]:
        return self._teacher

    def set_teacher(self, teacher: Optional[MultiHeadPredictor], compile: bool = False) -> None:
        """Hold `teacher` outside the module tree; `compile` runs it through torch.compile as a
        callable, so its own state_dict keys stay clean."""
        hold_outside(self, "_teacher", teacher)
        hold_outside(
            self, "_teacher_fn", torch.compile(teacher) if compile and teacher is not None else teacher
        )

    def needs_teacher(self) -> bool:
        return bool(self.old) and self.method.uses_teacher

    def on_fit_start(self) -> None:
        """The teacher was set by the `TeacherSwap` callback (which runs first)."""
        if self.needs_teacher() and self._teacher is None:
            raise RuntimeError(
                f"phase {self.phase.index} distils old tasks {self.old} but has no teacher: fit "
                "with lhl.engine.teacher.TeacherSwap() among the Trainer's callbacks, or call set_teacher()"
            )
        self.method.on_phase_start(self.phase, self.network)

    # --- training -----------------------------------------------------------------------------
    def training_step(self, batch: Dict[str, Tensor], batch_idx: int) -> Tensor:
        images = batch["image"]
        heads = list(self.phase.tasks) + (self.old if self.method.uses_teacher else [])
        student = self._student_fn(images, heads)
        teacher = self.teacher_outputs(images) if self.needs_teacher() else None
        loss, logs = self.method.training_loss(student, teacher, batch, list(self.phase.tasks), self.old)
        extra, extra_logs = self.method.extra_loss(self.network, batch, self.phase)
        if extra is not None:
            loss = loss + extra
            logs.update(extra_logs)
        # checked on logging steps only, where the logged values are read from the device anyway:
        # a per-step check would add a host-device sync to every GPU step
        if self.global_step % max(1, int(self.train_cfg.log_every_n_steps)) == 0 and not torch.isfinite(loss):
            terms = ", ".join(f"{k}={float(v):.4g}" for k, v in logs.items())
            raise FloatingPointError(
                f"non-finite loss at phase {self.phase.index}, step {self.global_step} "
                f"(method '{type(self.method).__name__}'): {terms}. Lower train.lr, check the "
                "labels of the batch for NaN/inf, or use train.gradient_clip_val."
            )
        logs["loss/total"] = loss.detach()
        self.log_dict(logs, on_step=True, on_epoch=False, batch_size=images.shape[0])
        self.log("phase", float(self.phase.index), on_step=True, on_epoch=False)
        self.log("step_global", float(self.global_step_offset + self.global_step), on_step=True, on_epoch=False)
        return loss

    def teacher_outputs(self, images: Tensor) -> Dict[str, Tensor]:
        """The old heads' predictions, computed under `inference_mode` (no autograd bookkeeping at
        all) in the step's precision, then copied once into ordinary tensors: inference tensors
        cannot be saved for backward, and the method losses multiply the student by them."""
        with torch.inference_mode():
            if self.train_cfg.get("teacher_pass", "shared") == "per_task":  # the release's way
                out = {t: self._teacher_fn(images, [t])[t] for t in self.old}
            else:
                out = self._teacher_fn(images, self.old)
        return {t: v.clone() for t, v in out.items()}

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        """After the optimiser step: the method sees the batch (ER stores it only now, so a batch
        is never replayed in its own step) and the step just taken (SI's path integral)."""
        self.method.observe(batch, self.phase)
        self.method.after_optimizer_step(self.network)

    def on_train_end(self) -> None:
        """End-of-phase estimates (Fisher, importances) on the training device, before teardown
        moves the network to the CPU, with the phase's own (sharded) train loader."""
        dm = self.trainer.datamodule
        loader = dm.train_dataloader() if dm is not None else self.trainer.train_dataloader
        self.method.on_phase_end(self.phase, self.network, loader)

    def configure_optimizers(self):
        params = [p for p in self.network.parameters() if p.requires_grad]
        cfg = self.train_cfg
        if cfg.optimizer == "adam":
            return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        if cfg.optimizer == "adamw":
            return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)

    # --- evaluation ---------------------------------------------------------------------------
    def validation_step(self, batch: Dict[str, Tensor], batch_idx: int) -> None:
        preds = self.network(batch["image"], self.eval_tasks)
        for t in self.eval_tasks:
            self.metrics[t].update(preds[t].float(), batch[t])

    def on_validation_epoch_end(self) -> None:
        out = {}
        for t in self.eval_tasks:
            out[t] = {k: float(v) for k, v in self.metrics[t].compute().items()}
            self.metrics[t].reset()
        self.last_eval = out
        flat = {f"val/{t}/{k}": v for t, m in out.items() for k, v in m.items()}
        self.log_dict(flat, sync_dist=False, rank_zero_only=True)

    # --- checkpoints --------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["lhl"] = {
            "heads": {n: (s.kind, s.channels) for n, s in self.network.specs.items()},
            "teacher": None if self._teacher is None else self._teacher.state_dict(),
            "teacher_heads": [] if self._teacher is None else list(self._teacher.heads.keys()),
            "method_state": self.method.state_dict(),
            "phase": self.phase.index,
            "global_step": self.global_step_offset,
        }

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Runs before the weights load: recreate heads and the teacher from the stored maps."""
        info = checkpoint["lhl"]
        for name, (kind, ch) in info["heads"].items():
            self.network.add_head(build_task(kind, name, ch))
        if info["teacher"] is not None:
            teacher = freeze_copy(self.network, info["teacher_heads"])
            teacher.load_state_dict(info["teacher"])
            self.set_teacher(teacher)
        self.method.load_state_dict(info["method_state"])
