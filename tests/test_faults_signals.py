"""SIGTERM during a phase's fit: Lightning stops the fit with SystemExit(0); `lhl run` must not exit 0
with an unfinished run (a scheduler would record success). It exits 1 saying how to resume."""
from __future__ import annotations

import lightning.pytorch as pl
import pytest
from lightning.pytorch.utilities.exceptions import SIGTERMException

from conftest import tiny_overrides
from lhl.cli import main
from lhl.config import load_config
from lhl.engine import runner as runner_mod
from lhl.runs.identity import run_folder_of
from lhl.runs.results import Results


class _SigtermAt(pl.Callback):  # what Lightning's fit loop raises after a SIGTERM
    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if trainer.default_root_dir.endswith("phase_1") and trainer.global_step == 1:
            raise SIGTERMException()


def test_sigterm_in_a_phase_is_not_an_exit_code_0(tmp_path, synth_cache, monkeypatch, capsys):
    args = tiny_overrides(tmp_path, synth_cache, **{"sequence.tasks": "[semantic,depth]", "train.max_steps": 2,
                                                    "eval.gallery_samples": 0})
    real = runner_mod.phase_trainer
    with monkeypatch.context() as m:
        m.setattr(runner_mod, "phase_trainer", lambda c, p, n, r, lg, extra=(): real(c, p, n, r, lg, [*extra, _SigtermAt()]))
        with pytest.raises(SystemExit) as stop:
            main(["run", *args])
    assert stop.value.code == "lhl run: SIGTERM: stopped before the run was complete; the same command resumes it"
    root = run_folder_of(load_config([], args)).root
    assert [p["phase"] for p in Results.load(root).phases] == [0] and not (root / "run.lock").exists()
    assert main(["run", *args]) == 0
    assert [p["phase"] for p in Results.load(root).phases] == [0, 1]
