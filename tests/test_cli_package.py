"""One `cli` package: one module per command, one form for options, --help from one helper, the
developer measurements under `lhl dev` (their older spellings still work)."""
from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest

from lhl.cli import COMMANDS, DEV_ALIASES, USAGE, main
from lhl.cli.common import flags
from lhl.cli.dev import MEASUREMENTS
from test_results import _run, _single_task_ref

CLI = Path(__file__).resolve().parents[1] / "src" / "lhl" / "cli"


def test_every_command_is_one_module_of_the_package():
    modules = {p.stem for p in CLI.glob("*.py")} - {"__init__", "common"}
    assert {t.split(":")[0].rsplit(".", 1)[1] for t in COMMANDS.values()} == modules
    for target in COMMANDS.values():
        module, func = target.split(":")
        assert module.startswith("lhl.cli.") and callable(getattr(importlib.import_module(module), func))
    listed = {line.split()[0] for line in USAGE.split("commands:")[1].split("\n\n")[0].splitlines() if line.strip()}
    assert listed == set(COMMANDS)  # the usage names every command and nothing else
    assert set(DEV_ALIASES) <= set(MEASUREMENTS) and not set(DEV_ALIASES) & set(COMMANDS)  # old spellings


def _code(argv):
    try:
        return main(argv)
    except SystemExit as stop:  # argparse's --help
        return stop.code


@pytest.mark.parametrize("argv", [[c] for c in COMMANDS] + [["dev", m] for m in MEASUREMENTS] + [[m] for m in DEV_ALIASES],
                         ids=" ".join)
def test_help_of_every_command(argv, capsys):
    assert _code([*argv, "--help"]) == 0
    assert "usage" in capsys.readouterr().out.lower()


def test_unknown_sub_commands_are_usage_errors(capsys):
    assert main(["dev", "nope"]) == 2 and "unknown sub-command 'nope'" in capsys.readouterr().err
    assert main(["data", "nope"]) == 2 and main(["nope"]) == 2


def test_options_are_name_value_config_keys_dotted():
    argv = ["RUN", "ref=R", "json=out.json", "train.lr=0.1", "--short", "S", "teacher_ckpt=T"]
    assert flags(argv, ("ref", "json", "teacher-ckpt")) == [
        "RUN", "--ref", "R", "--json", "out.json", "train.lr=0.1", "--short", "S", "--teacher-ckpt", "T"]


def test_report_takes_both_spellings_of_its_options(tmp_path, capsys):
    run, ref = tmp_path / "run", tmp_path / "ref"
    _run().save(run)
    _single_task_ref().save(ref)
    out_a, out_b = tmp_path / "a.json", tmp_path / "b.json"
    assert main(["report", str(run), f"ref={ref}", f"json={out_a}"]) == 0
    assert main(["report", str(run), "--ref", str(ref), "--json", str(out_b)]) == 0
    assert json.loads(out_a.read_text()) == json.loads(out_b.read_text())
    assert json.loads(out_a.read_text())["delta"] == pytest.approx(-11.25)
