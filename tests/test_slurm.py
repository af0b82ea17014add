"""`lhl slurm`: the rendered sbatch script, early config validation, and submission via sbatch.

No SLURM is needed: `sbatch` and `srun` are small fake executables put on PATH.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from lhl.tools import slurm
from lhl.config import ConfigError

BASH = shutil.which("bash")
ARGS = [
    "gpus=4", "nodes=2", "time=02:00:00", "partition=p",
    "seq=synthetic_s1", "method=had", "train.epochs=2",
]


def _fake(bin_dir: Path, name: str, body: str) -> Path:
    """An executable shell script `name` in `bin_dir`."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    path = bin_dir / name
    path.write_text(f"#!{BASH}\n{body}\n")
    path.chmod(0o755)
    return path


def _directives(text: str) -> dict:
    return dict(re.findall(r"^#SBATCH --([\w-]+)(?:=(.*))?$", text, flags=re.M))


@pytest.fixture
def no_sbatch(tmp_path, monkeypatch):
    """A PATH without sbatch, so submit=auto never reaches a real cluster from a test."""
    empty = tmp_path / "empty_bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))


def test_script_directives_and_srun_line(tmp_path, capsys):
    out = tmp_path / "jobs" / "job.sbatch"
    assert slurm.cli(ARGS + ["submit=no", f"out={out}"]) == 0
    assert "submit with: sbatch" in capsys.readouterr().out
    text = out.read_text()
    d = _directives(text)
    assert d["nodes"] == "2"
    assert d["ntasks-per-node"] == "4" and d["gres"] == "gpu:4"  # one task per GPU
    assert d["time"] == "02:00:00" and d["partition"] == "p"
    assert d["signal"] == "SIGUSR1@90" and "requeue" in d
    assert d["cpus-per-task"] == "8" and d["open-mode"] == "append"
    assert d["output"] == f"{out.parent}/%x-%j.out"
    assert d["job-name"] == "lhl-synthetic_s1-had-s0"
    assert "account" not in d and "mem" not in d
    assert "set -euo pipefail" in text and "export PYTHONUNBUFFERED=1" in text
    srun = [line for line in text.splitlines() if line.startswith("srun ")]
    assert len(srun) == 1
    line = srun[0]
    assert "-m lhl run" in line
    # srun options before the program: recent Slurm does not pass --cpus-per-task on to srun
    assert line.split()[1:3] == ["--cpus-per-task=8", "--kill-on-bad-exit=1"]
    for token in ("seq=synthetic_s1", "method=had", "train.epochs=2",
                  "train.devices=4", "train.num_nodes=2", "train.accelerator=gpu"):
        assert token in line.split()
    # directives come before the first command, or sbatch ignores them
    first_cmd = min(i for i, l in enumerate(text.splitlines()) if l and not l.startswith("#"))
    last_dir = max(i for i, l in enumerate(text.splitlines()) if l.startswith("#SBATCH"))
    assert last_dir < first_cmd
    subprocess.run([BASH, "-n", str(out)], check=True)


def test_optional_directives_only_when_given(tmp_path):
    out = tmp_path / "a.sbatch"
    slurm.cli(["seq=synthetic_s1", "submit=no", f"out={out}"])
    text = out.read_text()
    d = _directives(text)
    assert "partition" not in d and "account" not in d and "mem" not in d
    assert d["nodes"] == "1" and d["gres"] == "gpu:1" and d["time"] == "24:00:00"
    assert "\n\n#SBATCH" not in text  # the dropped placeholder line leaves no gap
    out2 = tmp_path / "b.sbatch"
    slurm.cli(["seq=synthetic_s1", "account=acc", "mem=64G", "submit=no", f"out={out2}"])
    d2 = _directives(out2.read_text())
    assert d2["account"] == "acc" and d2["mem"] == "64G" and "partition" not in d2


def test_default_path_under_run_out_dir(tmp_path, no_sbatch, capsys):
    runs = tmp_path / "runs"
    slurm.cli(["seq=synthetic_s1", "method=lwf", "seed=3", f"run.out_dir={runs}"])
    script = runs / "slurm" / "lhl-synthetic_s1-lwf-s3.sbatch"
    assert script.is_file()
    assert f"submit with: sbatch {script}" in capsys.readouterr().out  # auto, no sbatch: no submit
    assert f"run.out_dir={runs}" in script.read_text()


def test_typo_fails_before_writing(tmp_path):
    out = tmp_path / "jobs" / "job.sbatch"
    with pytest.raises(ConfigError, match="trian"):
        slurm.cli(ARGS + ["trian.epochs=1", "submit=no", f"out={out}"])
    assert not (tmp_path / "jobs").exists()
    with pytest.raises(ConfigError, match="gpus="):
        slurm.cli(["train.devices=2", "submit=no", f"out={out}"])
    with pytest.raises(ConfigError, match="time="):
        slurm.cli(["time=2h", "submit=no", f"out={out}"])
    with pytest.raises(ConfigError, match="partition="):
        slurm.cli(["partition=a b\n#SBATCH --x", "submit=no", f"out={out}"])
    with pytest.raises(ConfigError, match="gpus="):
        slurm.cli(["gpus=four", "submit=no", f"out={out}"])
    assert not (tmp_path / "jobs").exists()


def test_method_option_and_dataset_option_typos_fail_before_writing(tmp_path):
    """Checked against the method's Options and the dataset's constructor, on the login node."""
    out = tmp_path / "jobs" / "job.sbatch"
    with pytest.raises(ConfigError, match=r"unknown option 'method.neww' \(did you mean 'new'\?\); valid options: .*new"):
        slurm.cli(["seq=synthetic_s1", "method=had", "method.neww=3", "submit=no", f"out={out}"])
    with pytest.raises(ConfigError, match="data.options.n_trian.*did you mean 'n_train'"):
        slurm.cli(["seq=synthetic_s1", "method=had", "data.options={n_trian: 5}", "submit=no", f"out={out}"])
    with pytest.raises(ConfigError, match=r"sequence.tasks: \['depht'\] not offered"):
        slurm.cli(["seq=synthetic_s1", "method=had", "sequence.tasks=[semantic,depht]", "submit=no", f"out={out}"])
    with pytest.raises(ConfigError, match="method.name: unknown method 'hda'"):
        slurm.cli(["seq=synthetic_s1", "method=hda", "submit=no", f"out={out}"])
    assert not (tmp_path / "jobs").exists()


def test_submit_yes_calls_sbatch(tmp_path, monkeypatch, capsys):
    bin_dir = tmp_path / "bin"
    record = tmp_path / "sbatch_args"
    _fake(bin_dir, "sbatch", f'printf "%s\\n" "$@" > {record}\necho "Submitted batch job 123"')
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    out = tmp_path / "job.sbatch"
    assert slurm.cli(ARGS + ["submit=yes", f"out={out}"]) == 0
    assert record.read_text().split() == [str(out)]
    assert "Submitted batch job 123" in capsys.readouterr().out


def test_submit_yes_without_sbatch_fails(tmp_path, no_sbatch):
    with pytest.raises(ConfigError, match="sbatch is not on PATH"):
        slurm.cli(["seq=synthetic_s1", "submit=yes", f"out={tmp_path / 'j.sbatch'}"])


def test_script_runs_with_fake_srun(tmp_path, monkeypatch):
    """Execute the script body (venv activation under set -u, cd, quoting) with srun faked."""
    out = tmp_path / "job.sbatch"
    slurm.cli(ARGS + ["submit=no", f"out={out}", "data.options={n_train: 24, seed: 0}"])
    record = tmp_path / "srun_args"
    bin_dir = tmp_path / "bin"
    _fake(bin_dir, "srun", f'printf "%s\\n" "$@" > {record}; pwd >> {record}')
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    subprocess.run([BASH, str(out)], check=True, env=env, capture_output=True)
    args = record.read_text().splitlines()
    assert args[:2] == ["--cpus-per-task=8", "--kill-on-bad-exit=1"]
    assert args[3:6] == ["-m", "lhl", "run"]
    assert "data.options={n_train: 24, seed: 0}" in args  # one argument, quoting intact
    assert args[-1] == os.getcwd()


def test_method_presets_get_their_own_job_and_script(tmp_path, no_sbatch):
    """had and had_faithful share method.name 'had': named after the preset, neither overwrites the other."""
    runs = tmp_path / "runs"
    for preset in ("had", "had_faithful"):
        slurm.cli(["seq=synthetic_s1", f"method={preset}", f"run.out_dir={runs}", "cpus_per_task=6"])
    scripts = sorted(p.name for p in (runs / "slurm").glob("*.sbatch"))
    assert scripts == ["lhl-synthetic_s1-had-s0.sbatch", "lhl-synthetic_s1-had_faithful-s0.sbatch"]
    text = (runs / "slurm" / "lhl-synthetic_s1-had_faithful-s0.sbatch").read_text()
    assert _directives(text)["job-name"] == "lhl-synthetic_s1-had_faithful-s0"
    assert "srun --cpus-per-task=6 --kill-on-bad-exit=1 " in text


def test_render_placeholders():
    tpl = "a=$a\n$opt\n  ${opt}\nb=$$x\n"
    assert slurm.render(tpl, {"a": "1", "opt": ""}) == "a=1\nb=$x\n"
    assert slurm.render(tpl, {"a": "1", "opt": "o"}) == "a=1\no\n  o\nb=$x\n"
    with pytest.raises(ConfigError, match=r"\$a"):
        slurm.render(tpl, {"opt": ""})
