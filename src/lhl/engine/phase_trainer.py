"""The Lightning `Trainer` of one phase: fit only (evaluation happens once, after; with
`eval.every_n_epochs` also every N epochs, for learning curves), the teacher callback, the
phase's progress bar, DDP that lets idle heads be."""
from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import torch
from omegaconf import DictConfig

from lhl.config.epochs import phase_epochs
from lhl.config.resolve import expected_processes
from lhl.core.errors import UsageError
from lhl.data.protocol import Phase
from lhl.engine.mid_phase import AtomicCheckpointIO, mid_phase_checkpoint
from lhl.engine.progress import PhaseProgressBar
from lhl.engine.teacher import ObserveBatches, TeacherSwap


def process_count(cfg: DictConfig) -> int:
    """How many training processes `train.devices` x `train.num_nodes` start: as the config fixes
    it (`resolve.expected_processes`), else (devices=auto / -1) every visible GPU on a GPU
    accelerator, one process otherwise."""
    n = expected_processes(cfg)
    if n is None:
        t = cfg.train
        n = (max(torch.cuda.device_count(), 1) if t.accelerator in ("auto", "gpu", "cuda") else 1) * int(t.num_nodes)
    return n


def strategy(cfg: DictConfig):
    """DDP that lets heads idle in a phase (old heads under finetune, EWC, ER) without erroring."""
    if cfg.train.strategy in ("auto", "ddp") and process_count(cfg) > 1:
        return "ddp_find_unused_parameters_true"
    return cfg.train.strategy


def val_every(cfg: DictConfig) -> int:
    """Lightning's `check_val_every_n_epoch`: `eval.every_n_epochs` for learning curves (in-fit
    validations the module records), else never during fit (evaluation happens once, after)."""
    n = cfg.eval.get("every_n_epochs")
    if n is None:
        return 10**9
    if int(n) < 1:
        raise UsageError(f"eval.every_n_epochs={n}: give a number of epochs >= 1, or null (no learning curves)")
    return int(n)


def phase_trainer(cfg: DictConfig, phase: Phase, num_phases: int, root: Path, logger, extra_callbacks=()) -> pl.Trainer:
    """A Trainer whose `default_root_dir` is the phase's own folder (its SLURM checkpoints stay there)."""
    t = cfg.train
    bar = [PhaseProgressBar(phase.index, num_phases, phase.train_tasks)] if t.progress_bar else []
    last = mid_phase_checkpoint(t, root)  # phase_<i>/last.ckpt every N minutes / steps
    return pl.Trainer(
        default_root_dir=str(root),
        max_epochs=phase_epochs(t, phase.train_tasks),
        max_steps=t.max_steps,
        limit_train_batches=t.limit_train_batches,
        limit_val_batches=cfg.eval.limit_batches,
        check_val_every_n_epoch=val_every(cfg),
        num_sanity_val_steps=0,
        accelerator=t.accelerator,
        devices=t.devices,
        num_nodes=t.num_nodes,
        strategy=strategy(cfg),
        precision=t.precision,
        sync_batchnorm=t.sync_batchnorm,
        deterministic=t.deterministic,
        gradient_clip_val=t.gradient_clip_val,
        log_every_n_steps=t.log_every_n_steps,
        logger=logger if logger else False,
        callbacks=[TeacherSwap(), ObserveBatches(), *extra_callbacks] + bar + ([last] if last is not None else []),
        plugins=[AtomicCheckpointIO()],
        enable_checkpointing=last is not None,
        enable_model_summary=False,
        enable_progress_bar=bool(t.progress_bar),
        use_distributed_sampler=False,
    )
