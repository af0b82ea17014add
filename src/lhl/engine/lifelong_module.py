"""The LightningModule of one lifelong phase: student forward, teacher forward, the method's loss
terms, the optimiser-step hooks and the evaluation metrics.

The teacher (a frozen copy of the network taken at the phase boundary by the `TeacherSwap`
callback, `lhl.engine.teacher`) is held outside the module tree: it is not in `state_dict`, the
optimiser or DDP, and Lightning's `train()` never reaches it. A mid-phase (SLURM) checkpoint saves
it explicitly, since the student has moved on from it; a phase checkpoint does not need it.

At an architecture upgrade (`model.upgrade_at`) the teacher is the old network, set by the runner,
and the method may hand over an `aligner` (trainable projectors, `Method.upgrade_aligner`): it is a
submodule, trained and checkpointed with the network, and each step then also passes both
networks' encoder stages to the method.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Tuple

import lightning.pytorch as pl
import torch
from omegaconf import DictConfig
from torch import Tensor, nn

from lhl.core.optim import build_optimizer, phase_schedule
from lhl.core.rng import rng_states, set_rng_states
from lhl.data.protocol import Phase
from lhl.engine.diagnostics import LossTermDiagnostics
from lhl.engine.nonfinite import NonFiniteWatch
from lhl.methods.base import Method, Step
from lhl.models import MultiHeadPredictor
from lhl.models.frozen import freeze_copy, hold_outside
from lhl.tasks import build_task


class LifelongModule(pl.LightningModule):
    """Trains one phase: `phase.train_tasks` are supervised, `phase.old_tasks` are the teacher's."""

    def __init__(
        self, network: MultiHeadPredictor, method: Method, phase: Phase, train_cfg: DictConfig,
        eval_reduction: str = "global", step_offset: int = 0, aligner: Optional[nn.Module] = None,
        diag_every: Optional[int] = None,
    ):
        super().__init__()
        self.network = network
        self.aligner = aligner
        self.method = method
        self.phase = phase
        self.train_cfg = train_cfg
        self.step_offset = int(step_offset)  # steps of the earlier phases (the runner owns the count)
        self.metrics = nn.ModuleDict({t: network.specs[t].metric(eval_reduction) for t in phase.eval_tasks})
        self.last_eval: Dict[str, Dict[str, float]] = {}
        self.last_details: Dict[str, Dict[str, list]] = {}
        self.curve: List[dict] = []  # one row per in-fit validation (eval.every_n_epochs): curves.json
        self._fit_rng = None  # the RNG states an in-fit validation gives back (on_validation_end)
        self.phase_ended = False  # set when the method's end-of-phase estimates ran
        self._diag = LossTermDiagnostics(diag_every)  # diag.every (lhl.engine.diagnostics); None: off
        self._nonfinite = NonFiniteWatch()
        hold_outside(self, "_student_fn", torch.compile(network) if train_cfg.compile else network)
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
        hold_outside(self, "_teacher_fn", torch.compile(teacher) if compile and teacher is not None else teacher)

    def needs_teacher(self) -> bool:
        return bool(self.phase.old_tasks) and self.method.uses_teacher_in(self.phase)

    def on_fit_start(self) -> None:
        """The teacher was set by the `TeacherSwap` callback (which runs first); the method's state
        moves to the training device once, here."""
        if self.needs_teacher() and self._teacher is None:
            raise RuntimeError(
                f"phase {self.phase.index} distils old tasks {list(self.phase.old_tasks)} but has no "
                "teacher: fit with lhl.engine.teacher.TeacherSwap() among the Trainer's callbacks, "
                "or call set_teacher()"
            )
        self.method.to(self.device)
        self.method.on_phase_start(self.phase, self.network)

    # --- training -----------------------------------------------------------------------------
    def training_step(self, batch: Dict[str, Tensor], batch_idx: int) -> Tensor:
        images = batch["image"]
        heads = self.method.student_heads(self.phase)
        teacher = s_feats = t_feats = None
        if self.aligner is None:
            student = self._student_fn(images, heads)
            if self.needs_teacher():
                teacher = self.teacher_outputs(images)
        else:  # an upgrade with feature distillation: both networks' stages too
            student, s_feats = self.network.forward_with_features(images, heads)
            teacher, t_feats = self.teacher_outputs_with_features(images)
        step = Step(self.network, student, teacher, batch, self.phase, s_feats, t_feats, self.aligner)
        measured = self._diag.due(self.method, self.global_step)
        terms, diagnostics = self.method.loss_terms(step)
        loss = torch.stack(list(terms.values())).sum()
        logs = {f"loss/{name}": value.detach() for name, value in terms.items()}
        logs.update(diagnostics)
        # checked on the steps the loggers write, where the logged values are read from the device
        # anyway: a per-step check would add a host-device sync to every GPU step
        writes_logs = self._writes_logs()
        self._nonfinite.observe(terms, loss, self.global_step)  # device ops only (lhl.engine.nonfinite)
        if writes_logs:
            self.check_finite("on a logged step")
            if measured:
                logs.update(self._diag.measure(self.network, self.method, terms, diagnostics, self.phase))
            logs["loss/total"] = loss.detach()
            self.log_dict(logs, on_step=True, on_epoch=False, batch_size=images.shape[0])
            self.log("phase", float(self.phase.index), on_step=True, on_epoch=False)
            self.log("step_global", float(self.step_offset + self.global_step), on_step=True, on_epoch=False)
        return loss

    def check_finite(self, where: str) -> None:
        """Raise `NonFiniteLoss` (step, phase, term) if any step of this phase had a non-finite loss."""
        trainer = self._trainer
        folder = Path(trainer.default_root_dir) if trainer is not None else None
        self._nonfinite.check(self.phase.index, type(self.method).__name__, where, folder, self.step_offset)

    def _writes_logs(self) -> bool:
        """Whether the loggers write this step's values (every `train.log_every_n_steps`-th step,
        or a stopping one): only then are they handed to `self.log`. Lightning's per-call
        bookkeeping is thrown away on the other steps, and on the CPU benchmark's small network it
        is a visible share of a step: HAD on `synthetic_s1` at 3 epochs a phase took 42.7 / 43.9 s
        without this gate and 40.2 / 42.0 s with it, with bit-identical results (2026-12-03, two
        idle cores); the loggers receive the same values at the same steps."""
        trainer = self._trainer
        if trainer is None:  # a bare module (tests): always
            return True
        # Lightning's rule for its loggers, from public attributes: this step (global_step + 1) is a
        # multiple of log_every_n_steps, or the fit stops (tests/test_lightning_api.py compares it
        # with Lightning's own `should_update_logs`)
        every = trainer.log_every_n_steps
        return bool(every and (self.global_step + 1) % every == 0) or trainer.should_stop or bool(trainer.fast_dev_run)

    def teacher_outputs(self, images: Tensor) -> Dict[str, Tensor]:
        """The old heads' predictions, computed under `inference_mode` (no autograd bookkeeping at
        all) in the step's precision, then copied once into ordinary tensors: inference tensors
        cannot be saved for backward, and the method losses multiply the student by them."""
        old = list(self.phase.old_tasks)
        with torch.inference_mode():
            if self.train_cfg.get("teacher_pass", "shared") == "per_task":  # the release's way
                out = {t: self._teacher_fn(images, [t])[t] for t in old}
            else:
                out = self._teacher_fn(images, old)
        return {t: v.clone() for t, v in out.items()}

    def teacher_outputs_with_features(self, images: Tensor) -> Tuple[Dict[str, Tensor], List[Tensor]]:
        """`teacher_outputs` and the teacher's encoder stages, from the same single pass."""
        with torch.inference_mode():
            out, feats = self._teacher.forward_with_features(images, list(self.phase.old_tasks))
        return {t: v.clone() for t, v in out.items()}, [f.clone() for f in feats]

    def on_before_optimizer_step(self, optimizer) -> None:
        """Between backward (gradients unscaled under AMP) and the step: the method's gradient hook."""
        self.method.before_optimizer_step(self.network)

    def optimizer_step(self, *args, **kwargs) -> None:
        """The optimiser step, then the method's hook on the weights it produced."""
        super().optimizer_step(*args, **kwargs)
        self.method.after_optimizer_step(self.network)

    def on_train_end(self) -> None:
        """End-of-phase estimates (Fisher, importances) on the training device, before teardown
        moves the network to the CPU, with the phase's own (sharded) train loader."""
        dm = self.trainer.datamodule
        loader = dm.train_dataloader() if dm is not None else self.trainer.train_dataloader
        self.check_finite("at the end of the phase's training, before phase.ckpt")
        self.method.on_phase_end(self.phase, self.network, loader)
        self.phase_ended = True

    def configure_optimizers(self):
        cfg = self.train_cfg
        params = list(self.network.parameters()) + (list(self.aligner.parameters()) if self.aligner is not None else [])
        optimizer = build_optimizer(params, cfg.optimizer, cfg.lr, cfg.weight_decay, cfg.momentum,
                                    fused=bool(cfg.get("fused_optimizer", False)))
        name = cfg.get("lr_schedule", "constant")
        if name == "constant":  # estimated_stepping_batches loads the train loader: a resumed phase then
            return optimizer    # no longer matches an uninterrupted one (tests/test_requeue.py)
        schedule = phase_schedule(optimizer, name, self.trainer.estimated_stepping_batches)
        if schedule is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    # --- evaluation ---------------------------------------------------------------------------
    def validation_step(self, batch: Dict[str, Tensor], batch_idx: int) -> None:
        preds = self.network(batch["image"], list(self.phase.eval_tasks))
        for t in self.phase.eval_tasks:
            self.metrics[t].update(preds[t].float(), batch[t])

    def on_validation_epoch_end(self) -> None:
        out, details = {}, {}
        for t in self.phase.eval_tasks:
            metric = self.metrics[t]
            out[t] = {k: float(v) for k, v in metric.compute().items()}
            if hasattr(metric, "details"):  # per-class IoU of a semantic task (results.json, lhl report)
                details[t] = metric.details()
            metric.reset()
        self.last_eval, self.last_details = out, details
        flat = {f"val/{t}/{k}": v for t, m in out.items() for k, v in m.items()}
        self.log_dict(flat, sync_dist=False, rank_zero_only=True)
        if self.trainer.state.fn == "fit" and not self.trainer.sanity_checking:  # a learning-curve point
            self.curve.append({"phase": self.phase.index, "epoch": self.current_epoch + 1, "step": self.global_step,
                               "trained": list(self.phase.train_tasks), "metrics": out})

    def on_validation_model_zero_grad(self) -> None:
        """Lightning calls this only right before an in-fit validation (`eval.every_n_epochs`): keep
        the RNG states, which `on_validation_end` restores, so that validating (its loader's seed
        draw) takes nothing from training's random streams and the run's results stay the same."""
        super().on_validation_model_zero_grad()
        self._fit_rng = rng_states()

    def on_validation_end(self) -> None:
        if self._fit_rng is not None:
            set_rng_states(self._fit_rng)
            self._fit_rng = None

    # --- mid-phase checkpoints (SLURM requeue) ---------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        self.check_finite("before a mid-phase checkpoint was written (it was not)")
        checkpoint["lhl"] = {
            "heads": {n: (s.kind, s.channels) for n, s in self.network.specs.items()},
            "architecture": self.network.architecture,
            "teacher": None if self._teacher is None else self._teacher.state_dict(),
            "teacher_heads": [] if self._teacher is None else list(self._teacher.heads.keys()),
            "method_state": self.method.state_dict(),
            "phase": self.phase.index,
            # dropout and augmentation continue as if uninterrupted (during an in-fit validation: as
            # training will continue, with the states that validation gives back)
            "rng": rng_states() if self._fit_rng is None else self._fit_rng,
            "curve": list(self.curve),  # the phase's learning-curve points so far
        }

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Runs before the weights load: recreate heads and the teacher from the stored maps."""
        info = checkpoint["lhl"]
        if info.get("architecture", self.network.architecture) != self.network.architecture:
            raise ValueError(
                f"phase {self.phase.index}'s mid-phase checkpoint holds a '{info['architecture']}' network, not "
                f"'{self.network.architecture}' (model.upgrade_at / model.upgrade_to changed); start in a new folder"
            )
        for name, (kind, ch) in info["heads"].items():
            self.network.add_head(build_task(kind, name, ch))
        if info["teacher"] is not None:
            # at an upgrade the runner already set the old-architecture teacher: load into it
            teacher = self._teacher if self._teacher is not None else freeze_copy(self.network, info["teacher_heads"])
            teacher.load_state_dict(info["teacher"])
            self.set_teacher(teacher)
        self.method.load_state_dict(info["method_state"])
        self.curve = list(info.get("curve", []))
        if info.get("rng") is not None:
            set_rng_states(info["rng"])
