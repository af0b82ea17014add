"""Loggers: W&B offline writes its run files (isolated in a subprocess), TensorBoard writes events."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import tiny_overrides
from lhl.config import load_config
from lhl.engine.loggers import wandb_offline_default
from lhl.engine.runner import run


def _two_phase(tmp_path, cache, **extra):
    return tiny_overrides(tmp_path, cache, **{"sequence.tasks": "[semantic,depth]", "train.max_steps": 2, **extra})


@pytest.mark.slow
def test_wandb_offline_run_writes_files(tmp_path, synth_cache):
    pytest.importorskip("wandb")
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(HOME=str(tmp_path), WANDB_SILENT="true", PYTHONUNBUFFERED="1")  # no API key anywhere
    args = _two_phase(tmp_path, synth_cache, logger="wandb", method="lwf")
    proc = subprocess.run([sys.executable, "-m", "lhl", "run", *args], env=env, cwd=os.getcwd(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "wandb sync" in proc.stdout
    from lhl.runs.identity import run_folder_of

    run_dir = run_folder_of(load_config([], args)).root
    offline = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(offline) == 1  # one W&B run for the whole sequence
    assert list(offline[0].glob("*.wandb")) and (offline[0] / "files").is_dir()
    media = list(offline[0].rglob("*.png"))
    assert media, "forgetting plot and galleries are uploaded as images"


def test_wandb_offline_without_key(monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert wandb_offline_default()
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert not wandb_offline_default()


def test_tensorboard_logger_writes_events(tmp_path, synth_cache):
    pytest.importorskip("tensorboard")
    run_dir = run(load_config([], _two_phase(tmp_path, synth_cache, logger="tensorboard")))
    assert list((run_dir / "tb" / "phase_0").glob("events.out.tfevents.*"))
    assert list((run_dir / "tb" / "phase_1").glob("events.out.tfevents.*"))
