"""The periodic mid-phase checkpoint: a crash that is not a SLURM pre-emption (node failure, OOM,
a killed process) loses at most `train.checkpoint_every_minutes` (or `_steps`) of a phase.

Lightning's `ModelCheckpoint(save_last=True, save_top_k=0)` writes `phase_<i>/last.ckpt` on the
configured trigger; this subclass writes it beside and renames it, so a kill during the write
leaves the previous one intact. The checkpoint holds the weights, the optimiser, the loops'
progress, the train loader's sampling position (`lhl.data.resumable`), and through the module's
`on_save_checkpoint` the heads, the teacher, the method's state and the RNG states. The runner
resumes the phase's `fit` from it and deletes it when the phase is complete.
"""
from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Optional

from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig

from lhl.core.io import storage_errors


class MidPhaseCheckpoint(ModelCheckpoint):
    """`last.ckpt` in the phase folder, written atomically (temporary file, then rename).

    With a time interval, Lightning broadcasts rank 0's clock decision at every batch end (a
    host-device sync per step under DDP); here it looks only every `TIME_CHECK_EVERY` steps
    (the same steps on every rank), so a checkpoint comes at most that many steps late."""

    TIME_CHECK_EVERY = 50

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._train_time_interval is not None and trainer.global_step % self.TIME_CHECK_EVERY:
            return
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def on_validation_end(self, trainer, pl_module) -> None:
        """An in-fit validation (`eval.every_n_epochs`) right after a save at the epoch's last step:
        save again, so that the checkpoint holds the validation's learning-curve row. Resumed from
        the save before it, Lightning would skip that validation (it fast-forwards its counters)
        and draw the val loader's seed from the training RNG on the way."""
        if (trainer.state.fn == "fit" and not trainer.sanity_checking and self._last_checkpoint_saved
                and self._last_global_step_saved == trainer.global_step):
            self._save_checkpoint(trainer, self._last_checkpoint_saved)

    def _save_checkpoint(self, trainer, filepath: str) -> None:
        tmp = filepath + ".tmp"
        with storage_errors(filepath, tmp):  # a full disk: the previous last.ckpt stays, the message says so
            trainer.save_checkpoint(tmp, self.save_weights_only)  # ends in a barrier
        if trainer.is_global_zero:
            os.replace(tmp, filepath)
        trainer.strategy.barrier("lhl.last_ckpt")
        self._last_global_step_saved = trainer.global_step
        self._last_checkpoint_saved = filepath


def mid_phase_checkpoint(train_cfg: DictConfig, phase_dir: Path) -> Optional[MidPhaseCheckpoint]:
    """The callback for `train.checkpoint_every_steps` (when set) or `_minutes`; None when both are off."""
    steps = train_cfg.get("checkpoint_every_steps")
    minutes = train_cfg.get("checkpoint_every_minutes")
    trigger = {}
    if steps:
        trigger["every_n_train_steps"] = int(steps)
    elif minutes:
        trigger["train_time_interval"] = timedelta(minutes=float(minutes))
    else:
        return None
    return MidPhaseCheckpoint(
        dirpath=str(phase_dir), save_last=True, save_top_k=0, enable_version_counter=False,
        save_on_train_epoch_end=False, **trigger,
    )
