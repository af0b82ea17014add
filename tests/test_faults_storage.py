"""Storage faults: a full disk or an I/O error during a write leaves the previous checkpoint and
results intact and stops naming the path and the free space; a truncated checkpoint found at resume
is named, set aside (`*.corrupt`) and the run resumes from the last good one, to the same numbers."""
from __future__ import annotations

import errno
import io
import json
import os

import lightning.pytorch as pl
import pytest
import torch

from conftest import tiny_overrides
from lhl.config import load_config
from lhl.core import io as lhl_io
from lhl.core.io import StorageError, atomic_write_json
from lhl.engine import runner as runner_mod
from lhl.runs.identity import run_folder_of
from lhl.engine.runner import run
from lhl.runs.results import Results


def test_a_failing_write_keeps_the_old_file_and_names_path_and_space(tmp_path, monkeypatch):
    target = tmp_path / "results.json"
    atomic_write_json(target, {"a": 1})

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(lhl_io.os, "fsync", full)
    with pytest.raises(StorageError, match=rf"cannot write {target}: No space left on device \([0-9.]+ \w+ free"):
        atomic_write_json(target, {"a": 2})
    assert json.loads(target.read_text()) == {"a": 1} and [p.name for p in tmp_path.iterdir()] == ["results.json"]
    monkeypatch.setattr(lhl_io.os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(errno.EACCES, "denied")))
    with pytest.raises(PermissionError):  # not a storage fault: passed on as it is
        atomic_write_json(target, {"a": 3})


def _args(tmp_path, cache, **extra):
    return tiny_overrides(tmp_path, cache, **{
        "sequence.tasks": "[semantic,depth]", "method": "finetune", "train.epochs": 2, "train.max_steps": 5,
        "train.checkpoint_every_steps": 2, "eval.gallery_samples": 0, **extra})


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, synth_cache):
    return Results.load(run(load_config([], _args(tmp_path_factory.mktemp("full"), synth_cache))))


def test_full_disk_at_phase_checkpoint_and_eio_at_last_ckpt(tmp_path, synth_cache, monkeypatch, uninterrupted):
    args = _args(tmp_path, synth_cache)
    root = run_folder_of(load_config([], args)).root
    real_save = torch.save

    def save(obj, f, *a, **k):  # phase 1's phase.ckpt hits a full disk
        try:
            name = os.readlink(f"/proc/self/fd/{f.fileno()}")  # the temp file beside phase.ckpt
        except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
            name = ""
        if "phase_1/.phase.ckpt" in name:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *a, **k)

    with monkeypatch.context() as m:
        m.setattr(torch, "save", save)
        with pytest.raises(StorageError, match=rf"cannot write {root / 'phase_1' / 'phase.ckpt'}: No space.*free"):
            run(load_config([], args))
    before = (root / "results.json").read_bytes()
    assert [p["phase"] for p in Results.load(root).phases] == [0]
    assert torch.load(root / "phase_0" / "phase.ckpt", map_location="cpu", weights_only=False)["phase"] == 0
    assert not (root / "phase_1" / "phase.ckpt").exists() and not list(root.rglob("*.tmp"))

    from lightning.pytorch.plugins.io import TorchCheckpointIO

    real_io, saves = TorchCheckpointIO.save_checkpoint, []

    def failing(self, checkpoint, path, storage_options=None):  # phase 1's second last.ckpt (step 4): EIO
        if "phase_1" in str(path):
            saves.append(path)
            if len(saves) == 2:
                open(path, "wb").write(b"partial")  # a torn temp file, to be removed
                raise OSError(errno.EIO, "Input/output error")
        return real_io(self, checkpoint, path, storage_options)

    with monkeypatch.context() as m:
        m.setattr(TorchCheckpointIO, "save_checkpoint", failing)
        with pytest.raises(StorageError, match=rf"cannot write {root / 'phase_1' / 'last.ckpt'}: Input/output error"):
            run(load_config([], args))
    assert (root / "results.json").read_bytes() == before
    assert torch.load(root / "phase_1" / "last.ckpt", map_location="cpu", weights_only=False)["global_step"] == 2
    assert not list(root.rglob("*.tmp"))
    assert Results.load(run(load_config([], args))).phases == uninterrupted.phases  # resumed from step 2


def test_truncated_checkpoints_at_resume_are_set_aside(tmp_path, synth_cache, monkeypatch, uninterrupted, capsys):
    """A crash in phase 1 after its step-4 last.ckpt; then both phase_0/phase.ckpt and that last.ckpt
    are truncated: both are set aside, phase 0 runs again from the start, phase 1 from its start."""
    args = _args(tmp_path, synth_cache)
    root = run_folder_of(load_config([], args)).root

    class Crash(pl.Callback):
        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            if trainer.default_root_dir.endswith("phase_1") and trainer.global_step == 5:
                raise RuntimeError("simulated crash")

    real_trainer = runner_mod.phase_trainer
    with monkeypatch.context() as m:
        m.setattr(runner_mod, "phase_trainer", lambda c, p, n, r, lg, extra=(): real_trainer(c, p, n, r, lg, [*extra, Crash()]))
        with pytest.raises(RuntimeError, match="simulated crash"):
            run(load_config([], args))
    for path in (root / "phase_0" / "phase.ckpt", root / "phase_1" / "last.ckpt"):
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    capsys.readouterr()
    resumed = Results.load(run(load_config([], args)))
    out = capsys.readouterr().out
    assert f"{root / 'phase_0' / 'phase.ckpt'} cannot be read (" in out and "phase 1 runs again from the start" in out
    assert f"{root / 'phase_1' / 'last.ckpt'} cannot be read (" in out and "set aside as last.ckpt.corrupt" in out
    assert (root / "phase_0" / "phase.ckpt.corrupt").is_file() and (root / "phase_1" / "last.ckpt.corrupt").is_file()
    assert resumed.phases == uninterrupted.phases


def test_a_kill_inside_a_write_keeps_the_old_file(tmp_path):
    """The fault campaign's hook: SIGKILL after the temp file is written, before the rename."""
    import signal
    import subprocess
    import sys

    target = tmp_path / "results.json"
    target.write_text("old\n")
    code = f"from lhl.core.io import atomic_write_text; atomic_write_text({str(target)!r}, 'new')"
    env = {**os.environ, "LHL_FAULT_WRITE": "results.json"}
    assert subprocess.run([sys.executable, "-c", code], env=env, timeout=120).returncode == -signal.SIGKILL
    assert target.read_text() == "old\n"
    assert [p.name.startswith(".results.json.") for p in tmp_path.iterdir() if p != target] == [True]
    from lhl.core.io import stale_temp_files

    assert len(stale_temp_files(tmp_path)) == 1  # what the run's next attempt deletes, as the folder's one writer
