"""SLURM pre-emption: one process-wide SIGUSR1 handler for the whole run.

Lightning installs its own SIGUSR1 handler only inside `fit`/`validate`, so a signal between
phases (saving, plots, galleries, logging) or during data preparation took the default action and
killed the job as FAILED. Under SLURM the runner installs `RequeueSignal` instead for the whole
run (Lightning then leaves SIGUSR1 alone: it never replaces an existing handler). The handler only
sets a flag; the work happens at the next safe point:

- during training, at the end of a batch (`RequeueCallback`, after the method saw the batch):
  all ranks agree, save `phase_<i>/requeue.ckpt` (written beside, then renamed), rank 0 runs
  `scontrol requeue $SLURM_JOB_ID` and the run stops with `Requeued`;
- outside training, where the runner calls `RequeueSignal.check` (after data preparation and
  after each phase is recorded): the finished work is already on disk, so it requeues and stops.

The requeue checkpoint is not named `hpc_ckpt_*.ckpt` and Lightning never writes one (its handler
is not installed), so nothing in a phase folder is picked up implicitly by `fit`/`validate`; the
runner passes the checkpoint to resume from explicitly (`RunFolder.resume_checkpoint`).
"""
from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import threading
from pathlib import Path
from typing import Callable, Optional

import lightning.pytorch as pl
import torch.distributed as dist
from lightning.fabric.plugins.environments import SLURMEnvironment

from lhl.core.io import storage_errors

log = logging.getLogger("lhl")


class Requeued(Exception):
    """Raised to stop the run after the job was requeued (its finished work is saved)."""


def slurm_job_id() -> Optional[str]:
    """The id `scontrol requeue` takes (array jobs: <array job>_<task>), as Lightning builds it."""
    array_job = os.environ.get("SLURM_ARRAY_JOB_ID")
    job = f"{array_job}_{os.environ['SLURM_ARRAY_TASK_ID']}" if array_job else os.environ.get("SLURM_JOB_ID")
    return job if job and re.fullmatch(r"[0-9_-]+", job) else None


def scontrol_requeue() -> int:
    """`scontrol requeue <job>` (rank 0 only); returns its exit code (127 when it cannot run)."""
    job = slurm_job_id()
    if job is None:
        log.warning("SIGUSR1 received but no SLURM job id is set: not requeued")
        return 127
    try:
        code = subprocess.call(["scontrol", "requeue", job])
    except FileNotFoundError:
        code = 127
    (log.info if code == 0 else log.warning)("scontrol requeue %s: exit code %d", job, code)
    print(f"lhl: SIGUSR1: requeued SLURM job {job} (scontrol exit code {code})", flush=True)
    return code


class RequeueSignal:
    """The run-wide SIGUSR1 flag; `install` under SLURM, `restore` at the end of the run."""

    def __init__(self, on_preempt: Callable[[], None] = lambda: None):
        self.requested = False
        self.installed = False
        self.on_preempt = on_preempt  # e.g. mark the W&B run as pre-empting
        self._previous = None

    def install(self) -> "RequeueSignal":
        if SLURMEnvironment.detect() and threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGUSR1, self._handle)
            self.installed = True
        return self

    def restore(self) -> None:
        if self.installed:
            signal.signal(signal.SIGUSR1, self._previous if self._previous is not None else signal.SIG_DFL)
            self.installed = False

    def _handle(self, signum, frame) -> None:
        self.requested = True

    def agreed(self) -> bool:
        """Whether any rank got the signal (a collective under DDP: every rank must call it)."""
        flag = self.requested
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            import torch

            backend_cuda = dist.get_backend() == "nccl"
            t = torch.tensor([int(flag)], device="cuda" if backend_cuda else "cpu")
            dist.all_reduce(t)
            flag = bool(t.item())
        return flag

    def check(self, where: str) -> None:
        """A safe point outside training: requeue and stop when the signal came."""
        if not self.installed or not self.agreed():
            return
        self._requeue(where)

    def _requeue(self, where: str) -> None:
        rank0 = not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0
        if rank0:
            self.on_preempt()
            scontrol_requeue()
        raise Requeued(f"requeued on SIGUSR1 {where}")


class RequeueCallback(pl.Callback):
    """At the end of a training batch: on SIGUSR1 save the phase's requeue checkpoint, requeue, stop.

    Under DDP the ranks agree by an all-reduce, done every `DDP_CHECK_EVERY` steps (the same steps
    on every rank) so as not to add a host-device sync to every step; SLURM's 90 s warning leaves
    room for that many steps and the save."""

    DDP_CHECK_EVERY = 10

    def __init__(self, signal_flag: RequeueSignal, path: Path):
        self.flag = signal_flag
        self.path = Path(path)

    def on_train_batch_end(self, trainer: pl.Trainer, module, outputs, batch, batch_idx) -> None:
        if not self.flag.installed:
            return
        if trainer.world_size > 1 and trainer.global_step % self.DDP_CHECK_EVERY:
            return
        if not trainer.strategy.reduce_boolean_decision(self.flag.requested, all=False):
            return
        tmp = self.path.with_name(self.path.name + ".tmp")
        with storage_errors(self.path, tmp):
            trainer.save_checkpoint(str(tmp))  # every rank takes part; rank 0 writes; ends in a barrier
        if trainer.is_global_zero:
            os.replace(tmp, self.path)
        trainer.strategy.barrier("lhl.requeue")
        self.flag._requeue(f"in phase folder {self.path.parent.name} at step {trainer.global_step}")
