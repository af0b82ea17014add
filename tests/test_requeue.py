"""Resuming inside a phase: the train loader's sampling position, the periodic `last.ckpt` after a
crash, SLURM's SIGUSR1 during a phase and between phases (fake SLURM environment, stub scontrol).
Every resumed run ends with the uninterrupted run's numbers, bit for bit (CPU)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import lightning.pytorch as pl
import pytest
import torch

from conftest import tiny_overrides
from lhl.cli import main
from lhl.config import load_config
from lhl.data.resumable import ResumableLoader
from lhl.engine import runner as runner_mod
from lhl.runs.identity import run_folder_of
from lhl.engine.runner import run
from lhl.runs.results import Results


def _batches(loader, n=None):
    out = []
    for i, b in enumerate(loader):
        if n is not None and i >= n:
            break
        out.append(b.tolist())
    return out


@pytest.mark.parametrize("shuffle", [True, False])
def test_loader_resumes_mid_epoch_and_at_epoch_end(shuffle):
    """Epoch e of a restored loader yields exactly the batches the original would have, after
    `position` processed ones (mid-epoch) or from the next epoch's start (saved at an epoch end)."""
    data = torch.arange(10)

    def make(pos):
        return ResumableLoader(data, batch_size=3, shuffle=shuffle, drop_last=True,
                               generator=torch.Generator().manual_seed(7), position_fn=lambda: pos[0])

    pos = [0]
    ref = make(pos)
    epochs = [_batches(ref) for _ in range(4)]  # four epochs, uninterrupted
    for epoch, done in [(0, 1), (1, 2), (1, 3)]:
        pos = [0]
        a = make(pos)
        for _ in range(epoch):
            _batches(a)
        _batches(a, done)
        pos[0] = done
        state = a.state_dict()
        b = make([0])
        b.load_state_dict(state)
        if done < len(a):
            assert _batches(b) == epochs[epoch][done:]
        else:
            assert _batches(b) == epochs[epoch + 1]
        assert _batches(b) == epochs[epoch + 1 if done < len(a) else epoch + 2]


class _CrashAt(pl.Callback):
    """Raise at the end of the given global step of the given phase (before that step's checkpoint)."""

    def __init__(self, phase_dir_name: str, step: int):
        self.phase_dir_name, self.step = phase_dir_name, step

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if trainer.default_root_dir.endswith(self.phase_dir_name) and trainer.global_step == self.step:
            raise RuntimeError("simulated crash")


class _StartStep(pl.Callback):
    def __init__(self, seen):
        self.seen = seen

    def on_train_start(self, trainer, module):
        self.seen.append((trainer.default_root_dir.rsplit("/", 1)[-1], trainer.global_step))


def _with_callback(monkeypatch, cb):
    real = runner_mod.phase_trainer

    def patched(cfg, phase, n, root, logger, extra=()):
        return real(cfg, phase, n, root, logger, [*extra, cb])

    monkeypatch.setattr(runner_mod, "phase_trainer", patched)


def _overrides(tmp_path, cache, **extra):
    # 2 phases of 12 samples, batch 4: 3 batches per epoch, 5 steps = 2 epochs; a shuffled loader,
    # LwF (teacher and distillation), dropout 0.5 in the heads: RNG and sampling both matter
    return tiny_overrides(tmp_path, cache, **{
        "sequence.tasks": "[semantic,depth]", "method": "lwf", "model.backbone": "resnet10t",
        "train.epochs": 2, "train.max_steps": 5, "eval.gallery_samples": 0, **extra})


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, synth_cache):
    return Results.load(run(load_config([], _overrides(tmp_path_factory.mktemp("full"), synth_cache))))


# (crash at the end of step, checkpoint every n steps): the last.ckpt of step 4 is mid-epoch 2,
# that of step 3 the end of epoch 1
@pytest.mark.parametrize("crash_step,every", [(5, 4), (4, 3)])
def test_killed_mid_phase_resumes_from_last_checkpoint(tmp_path, synth_cache, monkeypatch, uninterrupted,
                                                       crash_step, every):
    full = uninterrupted
    args = _overrides(tmp_path / "b", synth_cache, **{"train.checkpoint_every_steps": every})
    with monkeypatch.context() as m:
        _with_callback(m, _CrashAt("phase_1", crash_step))
        with pytest.raises(RuntimeError, match="simulated crash"):
            run(load_config([], args))
    run_dir = run_folder_of(load_config([], args)).root
    last = run_dir / "phase_1" / "last.ckpt"
    assert last.is_file() and not list(run_dir.rglob("*.tmp"))
    assert torch.load(last, map_location="cpu", weights_only=True)["global_step"] == crash_step - 1
    seen = []
    _with_callback(monkeypatch, _StartStep(seen))
    resumed = Results.load(run(load_config([], args)))
    assert seen == [("phase_1", crash_step - 1)]  # phase 0 was done; phase 1 went on from its last.ckpt
    assert not last.exists() and not list(run_dir.rglob("*.ckpt.tmp"))  # deleted when the phase ended
    assert resumed.phases == full.phases  # bit-identical numbers


def test_checkpoint_interval_keys(tmp_path, synth_cache):
    from lhl.engine.mid_phase import mid_phase_checkpoint

    t = load_config([], tiny_overrides(tmp_path, synth_cache)).train
    assert t.checkpoint_every_minutes == 30 and t.checkpoint_every_steps is None
    cb = mid_phase_checkpoint(t, tmp_path)
    assert cb._train_time_interval.total_seconds() == 1800 and cb.save_last and cb.save_top_k == 0
    t.checkpoint_every_steps = 50
    assert mid_phase_checkpoint(t, tmp_path)._every_n_train_steps == 50
    t.checkpoint_every_steps, t.checkpoint_every_minutes = None, None
    assert mid_phase_checkpoint(t, tmp_path) is None


# --- SLURM: SIGUSR1 during a phase and between phases ------------------------------------------
DRIVER = """
import os, signal, sys
import lightning.pytorch as pl
from lhl.engine import runner

class SignalAt(pl.Callback):  # SIGUSR1 to this process at the end of phase 1's step 3
    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if trainer.default_root_dir.endswith("phase_1") and trainer.global_step == 3:
            os.kill(os.getpid(), signal.SIGUSR1)

real = runner.phase_trainer
runner.phase_trainer = lambda cfg, p, n, root, lg, extra=(): real(cfg, p, n, root, lg, [*extra, SignalAt()])
from lhl.cli import main
sys.exit(main(["run", *sys.argv[1:]]))
"""


def slurm_env(tmp_path) -> dict:
    """Enough of a SLURM job for Lightning's SLURMEnvironment.detect(), and a stub `scontrol` on
    PATH that appends its arguments to tmp_path/scontrol.log."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    stub = bin_dir / "scontrol"
    stub.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path / "scontrol.log"}\n')
    stub.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "WANDB_"))}
    env.update(SLURM_JOB_ID="4242", SLURM_NTASKS="1", SLURM_JOB_NAME="lhl-test", SLURM_PROCID="0",
               SLURM_LOCALID="0", SLURM_NODEID="0", SLURM_NODELIST="localhost",
               PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", PYTHONUNBUFFERED="1")
    return env


@pytest.mark.slow
def test_sigusr1_in_a_phase_requeues_and_resumes_to_the_uninterrupted_numbers(tmp_path, synth_cache, uninterrupted):
    """`python -m lhl run` under (fake) SLURM gets SIGUSR1 in phase 2: at the next batch end it writes
    phase_1/requeue.ckpt, calls `scontrol requeue 4242` and exits 0; the same command again resumes
    phase 2 from that checkpoint (step 4, mid-epoch) and ends with the uninterrupted run's numbers."""
    env = slurm_env(tmp_path)
    args = _overrides(tmp_path, synth_cache)
    first = subprocess.run([sys.executable, "-c", DRIVER, *args], env=env, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert (tmp_path / "scontrol.log").read_text().split() == ["requeue", "4242"]
    run_dir = run_folder_of(load_config([], args)).root
    ckpt = run_dir / "phase_1" / "requeue.ckpt"
    assert torch.load(ckpt, map_location="cpu", weights_only=True)["global_step"] == 4
    assert [p["phase"] for p in Results.load(run_dir).phases] == [0]
    assert not list(run_dir.rglob("hpc_ckpt_*.ckpt"))  # Lightning's handler was not the one used
    again = subprocess.run([sys.executable, "-m", "lhl", "run", *args], env=env, capture_output=True, text=True,
                           timeout=600)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert f"resuming phase 2 from {ckpt}" in again.stdout
    assert not ckpt.exists()
    assert Results.load(run_dir).phases == uninterrupted.phases
    assert (tmp_path / "scontrol.log").read_text().split() == ["requeue", "4242"]  # once


def test_sigusr1_between_phases_requeues_instead_of_killing(tmp_path, synth_cache, monkeypatch):
    """SIGUSR1 while phase 1's results are recorded (outside any Trainer): the run stops after
    recording it, `scontrol requeue` is called, `lhl run` exits 0; a re-run finishes the sequence."""
    for k, v in slurm_env(tmp_path).items():
        monkeypatch.setenv(k, v)
    args = _overrides(tmp_path, synth_cache, **{"train.max_steps": 2})
    real = runner_mod.PhaseRunner._record

    def record_then_signal(self, results, phase, module, dm):
        real(self, results, phase, module, dm)
        if phase.index == 0:
            os.kill(os.getpid(), signal.SIGUSR1)

    before = signal.getsignal(signal.SIGUSR1)
    with monkeypatch.context() as m:
        m.setattr(runner_mod.PhaseRunner, "_record", record_then_signal)
        assert main(["run", *args]) == 0
    assert (tmp_path / "scontrol.log").read_text().split() == ["requeue", "4242"]
    run_dir = run_folder_of(load_config([], args)).root
    assert [p["phase"] for p in Results.load(run_dir).phases] == [0]
    assert signal.getsignal(signal.SIGUSR1) == before  # the run-wide handler is removed again
    assert main(["run", *args]) == 0
    assert [p["phase"] for p in Results.load(run_dir).phases] == [0, 1]


class _FakeWandb:
    def __init__(self):
        self.calls = []

    def finish_run(self, exit_code=0, preempted=False):
        self.calls.append((exit_code, preempted))


@pytest.mark.parametrize("error,expected", [(RuntimeError("boom"), (1, False)), (runner_mod.Requeued("x"), (0, True))])
def test_wandb_run_is_finished_on_error_and_requeue(tmp_path, synth_cache, monkeypatch, error, expected):
    r = runner_mod.PhaseRunner(load_config([], tiny_overrides(tmp_path, synth_cache)))
    r.wandb = _FakeWandb()

    def fail():
        raise error

    monkeypatch.setattr(r, "_run_phases", fail)
    with pytest.raises(type(error)):
        r.run()
    assert r.wandb.calls == [expected]


class _CrashAtTrainEnd(pl.Callback):
    """Raise when phase 0's fit ends: after its last step's last.ckpt, before the method's end-of-phase estimates."""

    def on_train_end(self, trainer, module):
        if trainer.default_root_dir.endswith("phase_0"):
            raise RuntimeError("simulated crash at the phase end")


def test_a_phase_resumed_after_its_last_step_still_runs_the_end_of_phase_estimates(tmp_path, synth_cache, monkeypatch):
    """A last.ckpt taken after the final step leaves Lightning nothing to train (it skips
    on_train_end): the runner must still run the method's on_phase_end (EWC's Fisher here)."""
    from lhl.runs.folder import RunFolder

    args = _overrides(tmp_path / "a", synth_cache, **{"method": "ewc", "train.checkpoint_every_steps": 5})
    ref = run(load_config([], _overrides(tmp_path / "ref", synth_cache, method="ewc")))
    with monkeypatch.context() as m:
        _with_callback(m, _CrashAtTrainEnd())
        with pytest.raises(RuntimeError, match="simulated crash at the phase end"):
            run(load_config([], args))
    run_dir = run_folder_of(load_config([], args)).root
    assert torch.load(run_dir / "phase_0" / "last.ckpt", map_location="cpu", weights_only=True)["global_step"] == 5
    resumed = run(load_config([], args))
    terms = RunFolder(resumed).load_phase(0)["method_state"]["terms"]
    expected = RunFolder(ref).load_phase(0)["method_state"]["terms"]
    assert len(terms) == len(expected) == 1 and terms[0]["importance"]
    for name, value in expected[0]["importance"].items():
        torch.testing.assert_close(terms[0]["importance"][name], value)
    assert Results.load(resumed).phases == Results.load(ref).phases
