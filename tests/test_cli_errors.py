"""The command line: what the user typed wrong is one line and exit code 2; a failure while running
keeps its traceback, exits 1 and is written to the run folder's log."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from conftest import tiny_overrides
from lhl.cli import main
from lhl.config import ConfigError
from lhl.core.errors import USER_ERRORS, MissingInput, UsageError


def test_a_misspelled_key_is_one_line_and_exit_2(tmp_path, capsys):
    code = main(["run", "seq=synthetic_small_s1", "train.lrr=0.1", f"run.out_dir={tmp_path}"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("lhl run: error: ") and "train.lrr" in err and "train.lr" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not any(tmp_path.iterdir())


def test_a_missing_run_folder_is_one_line(tmp_path, capsys):
    assert main(["runs", str(tmp_path / "nowhere")]) == 2
    assert "nowhere: no such folder" in capsys.readouterr().err


def test_user_errors_are_the_config_and_missing_input_kinds():
    assert issubclass(ConfigError, UsageError) and issubclass(UsageError, ValueError)
    assert issubclass(MissingInput, FileNotFoundError)
    assert not issubclass(KeyError, USER_ERRORS) and not issubclass(RuntimeError, USER_ERRORS)


@pytest.mark.parametrize("error", [KeyError("x"), ValueError("from torch")])
def test_a_failure_while_training_keeps_its_traceback_and_is_logged(tmp_path, synth_cache, monkeypatch, error):
    """A KeyError or ValueError raised in a phase is a bug or a failure, not a usage error."""
    import lhl.engine.runner as runner

    def fail(self, *args):
        raise error

    monkeypatch.setattr(runner.PhaseRunner, "_fit_phase", fail)
    with pytest.raises(type(error)):
        main(["run", *tiny_overrides(tmp_path, synth_cache), "method=finetune"])
    log = next((tmp_path / "runs").rglob("run.log")).read_text()
    assert "Traceback" in log and "in _run_phases" in log and type(error).__name__ in log
    assert (next((tmp_path / "runs").rglob("run.log")).parent / "config.yaml").is_file()


def test_the_process_exits_1_with_the_traceback(tmp_path, synth_cache):
    overrides = ["run", *tiny_overrides(tmp_path, synth_cache), "method=finetune"]
    code = textwrap.dedent(f"""
        import sys
        import lhl.engine.runner as runner
        def fail(self, *args):
            raise KeyError("bug in a phase")
        runner.PhaseRunner._fit_phase = fail
        from lhl.cli import main
        sys.exit(main({overrides!r}))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "Traceback (most recent call last)" in proc.stderr and "KeyError: 'bug in a phase'" in proc.stderr
    assert "bug in a phase" in next((tmp_path / "runs").rglob("run.log")).read_text()
