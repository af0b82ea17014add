"""Callbacks of a lifelong phase: the teacher swap at the phase boundary, and the method's view of
each trained batch (`ObserveBatches`)."""
from __future__ import annotations

import lightning.pytorch as pl
import torch

from lhl.engine.lifelong_module import LifelongModule
from lhl.models.frozen import freeze_copy


class TeacherSwap(pl.Callback):
    """At the start of a phase's fit, a frozen copy of the network (old heads only) becomes the
    teacher, unless one was restored from a checkpoint (a requeued job resumes mid-phase).

    The copy is taken from the network as the previous phase left it, before any step of this
    phase; it lives outside the module tree (no state_dict, optimiser or DDP entry), is moved to
    the training device, checked identical across ranks, and kept in eval mode at every epoch
    start whatever Lightning does to the student.
    """

    def on_fit_start(self, trainer: pl.Trainer, module: LifelongModule) -> None:
        if not module.needs_teacher():
            return
        teacher = module.teacher
        if teacher is None:
            teacher = freeze_copy(module.network, list(module.phase.old_tasks))
        teacher.to(module.device)
        if module.train_cfg.channels_last:
            teacher.to(memory_format=torch.channels_last)
        teacher.eval()
        module.set_teacher(teacher, compile=bool(module.train_cfg.compile))
        self._check_identical_across_ranks(module)

    def on_train_epoch_start(self, trainer: pl.Trainer, module: LifelongModule) -> None:
        if module.teacher is not None:
            module.teacher.eval()

    @staticmethod
    def _check_identical_across_ranks(module: LifelongModule) -> None:
        """Under DDP every rank must hold the same teacher: compare a checksum across ranks."""
        if module.trainer.world_size == 1:
            return
        with torch.no_grad():
            local = torch.stack([p.float().sum() for p in module.teacher.parameters()]).sum()
        sums = module.all_gather(local)
        if not torch.allclose(sums, sums[0].expand_as(sums), rtol=0, atol=1e-6):
            raise RuntimeError(
                f"the teacher differs across ranks (parameter checksums {sums.tolist()}); "
                "use the 'ddp' strategy (not ddp_spawn) so every rank copies identical weights"
            )


class ObserveBatches(pl.Callback):
    """After each training step the method sees its batch (`Method.observe`: ER and DER store it
    in their buffer only now). Lightning runs checkpoint callbacks after every other callback
    (`Trainer.callbacks` puts them last), so a mid-phase checkpoint of this step holds the
    buffer with this batch in it."""

    def on_train_batch_end(self, trainer: pl.Trainer, module: LifelongModule, outputs, batch, batch_idx) -> None:
        module.method.observe(batch, module.phase)
