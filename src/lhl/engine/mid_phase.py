"""The periodic mid-phase checkpoint: a crash that is not a SLURM pre-emption (node failure, OOM,
a killed process) loses at most `train.checkpoint_every_minutes` (or `_steps`) of a phase.

Lightning's `ModelCheckpoint(save_last=True, save_top_k=0)` writes `phase_<i>/last.ckpt` on the
configured trigger, through the Trainer's `AtomicCheckpointIO` (a `CheckpointIO` plugin, Lightning's
public way to change how checkpoints are written): beside, then renamed, so a kill during the write
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
from lightning.pytorch.plugins.io import TorchCheckpointIO
from omegaconf import DictConfig

from lhl.core.io import fault_point, storage_errors


class AtomicCheckpointIO(TorchCheckpointIO):
    """Every checkpoint the Trainer writes (`last.ckpt`, `requeue.ckpt`) goes to `<path>.tmp` and is
    renamed into place; a storage failure (a full disk) removes the partial file and names `path`."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        tmp = f"{path}.tmp"
        with storage_errors(path, tmp):  # a full disk: the previous file stays, the message says so
            super().save_checkpoint(checkpoint, tmp, storage_options)
        fault_point(path)  # the fault campaign's hook (LHL_FAULT_WRITE); nothing otherwise
        os.replace(tmp, path)


class MidPhaseCheckpoint(ModelCheckpoint):
    """`last.ckpt` in the phase folder (written atomically by the Trainer's `AtomicCheckpointIO`).

    With a time interval, Lightning broadcasts rank 0's clock decision at every batch end (a
    host-device sync per step under DDP); here it looks only every `TIME_CHECK_EVERY` steps
    (the same steps on every rank), so a checkpoint comes at most that many steps late."""

    TIME_CHECK_EVERY = 50

    def __init__(self, *, checks_time: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.checks_time = checks_time  # a train_time_interval trigger (not a step count)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.checks_time and trainer.global_step % self.TIME_CHECK_EVERY:
            return
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def on_validation_end(self, trainer, pl_module) -> None:
        """An in-fit validation (`eval.every_n_epochs`) right after a save at the epoch's last step:
        save again, so that the checkpoint holds the validation's learning-curve row. Resumed from
        the save before it, Lightning would skip that validation (it fast-forwards its counters)
        and draw the val loader's seed from the training RNG on the way. It reads two private
        attributes of `ModelCheckpoint` (no public one says where and at which step it last saved);
        tests/test_lightning_api.py names them."""
        if (trainer.state.fn == "fit" and not trainer.sanity_checking and self._last_checkpoint_saved
                and self._last_global_step_saved == trainer.global_step):
            trainer.save_checkpoint(self._last_checkpoint_saved, self.save_weights_only)  # every rank; ends in a barrier


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
        save_on_train_epoch_end=False, checks_time="train_time_interval" in trigger, **trigger,
    )
