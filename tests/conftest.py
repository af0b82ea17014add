"""Shared fixtures: tiny synthetic-rooms configs that run end to end on CPU in seconds."""
from __future__ import annotations

import os
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

SHARED = Path(__file__).resolve().parents[2] / "shared"

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def tiny_overrides(tmp_path: Path, cache: Path, **extra) -> list:
    """A 3-phase synthetic sequence at 32x32 with a narrow network: seconds per phase."""
    base = {
        "seq": "synthetic_s1",
        "run.out_dir": str(tmp_path / "runs"),
        "data.options": "{n_train: 24, n_val: 8, height: 32, width: 32, seed: 0, classes: 13, cache: '" + str(cache) + "'}",
        "data.batch_size": 4,
        "data.num_workers": 0,
        "model.backbone": "resnet18",  # the tests' network (the preset's resnet10t changes layer shapes)
        "model.timm_kwargs": "{}",  # at its own width, not the preset's quarter
        "model.init": "scratch",  # never the preset's cached synthetic pretraining
        "model.head_width": 8,
        "model.aspp_rates": "[1,2,3]",
        "train.epochs": 1,
        "train.task_epochs": "null",  # every phase train.epochs, whatever the preset's
        "train.max_steps": 3,
        "train.lr": 1e-3,  # the tests' optimiser, whatever the benchmark preset's
        "train.lr_schedule": "constant",
        "train.progress_bar": False,
        "train.accelerator": "cpu",
        "train.log_every_n_steps": 1,
        "eval.gallery_samples": 2,
    }
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items()]


@pytest.fixture(scope="session")
def synth_cache(tmp_path_factory) -> Path:
    """One tiny synthetic set per test session, shared by the end-to-end tests."""
    return tmp_path_factory.mktemp("synth_cache")


def method_loss(method, student, teacher, batch, train, old):
    """(total, logs) of one step of `method`, logged as the LightningModule logs it: each loss term
    as `loss/<name>` (as it entered the loss) plus the method's diagnostics."""
    from lhl.data.protocol import Phase
    from lhl.methods.base import Step

    phase = Phase(len(old), tuple(train), tuple(old), tuple(old) + tuple(train))
    terms, diagnostics = method.loss_terms(Step(None, student, teacher, batch, phase))
    total = sum(terms.values())
    return total, {**{f"loss/{k}": v.detach() for k, v in terms.items()}, **diagnostics}


class CrashInPhase1(pl.Callback):
    """Raise at the end of global step `step` of phase 1 (before that step's mid-phase checkpoint)."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if trainer.default_root_dir.endswith("phase_1") and trainer.global_step == self.step:
            raise RuntimeError("simulated crash")
