"""One Makefile dialect: every variable `make help` documents reaches the command of every target it
names (`make -n`: the commands printed, nothing run), and every target is documented."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")

#: what a value must look like in the command when it is not the sentinel itself (flags)
FLAGS = {"AGGREGATE": ("1", "aggregate=true"), "ISOLATED": ("1", "run.phases_start_from=")}
#: variables a target needs before it prints anything
NEEDS = {"report": ["RUN=some/run"]}


def make(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "--no-print-directory", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)


def documented():
    """[(variable, [targets])] and [targets] from `make help`."""
    out = make("-s", "help")
    assert out.returncode == 0, out.stderr
    text = out.stdout
    targets = re.findall(r"^  ([a-z][a-z0-9-]*) {2,}", text.split("variables")[0], re.M)
    variables = []
    for name, where in re.findall(r"^  ([A-Z][A-Z_]*) +([a-z0-9 -]+):", text, re.M):
        variables.append((name, where.split()))
    return variables, targets


VARIABLES, TARGETS = documented()
CASES = [(v, t) for v, ts in VARIABLES for t in ts]


def test_help_lists_targets_and_variables():
    assert {"experiment", "compare", "paper", "slurm", "distill", "curves", "docs", "help"} <= set(TARGETS)
    names = {v for v, _ in VARIABLES}
    assert {"SEQ", "METHOD", "METHODS", "SEEDS", "SEED", "GPUS", "NODES", "LOGGER", "JOBS", "RUNS_DIR",
            "ARGS", "REF"} <= names
    for name, where in VARIABLES:
        assert set(where) <= set(TARGETS), f"{name} names a target that make help does not list: {where}"


def test_every_phony_target_is_documented():
    phony = re.search(r"^\.PHONY:(.*)$", (ROOT / "Makefile").read_text(), re.M).group(1).split()
    assert sorted(set(phony) - set(TARGETS)) == []


@pytest.mark.parametrize("variable, target", CASES, ids=[f"{v}-{t}" for v, t in CASES])
def test_a_documented_variable_reaches_the_command(variable, target):
    value, expect = FLAGS.get(variable, ("zq" + variable.lower().replace("_", ""), None))
    if variable in ("SEED", "SEEDS", "GPUS", "NODES", "JOBS", "SCALE"):
        value = "4242"
    if variable == "SEEDS":
        value = "4242 4343"
    out = make("-n", "-B", target, *NEEDS.get(target, []), f"{variable}={value}")  # the last one wins
    assert out.returncode == 0, out.stderr
    for word in ([expect] if expect else value.split()):
        assert word in out.stdout, f"make {target} {variable}={value}: {word!r} not in\n{out.stdout}"


def test_seed_is_the_one_seed_alias_of_seeds():
    one = make("-n", "experiment", "SEED=3").stdout
    assert "seed=$s" in one and "for s in 3;" in one
    assert 'seeds="3"' in make("-n", "compare", "SEED=3").stdout
    assert '--seeds "3"' in make("-n", "distill", "SEED=3").stdout
    assert 'seeds="5 6"' in make("-n", "compare", "SEED=3", "SEEDS=5 6").stdout


def test_gpus_and_nodes_mean_the_same_for_experiment_and_slurm():
    run = make("-n", "experiment", "GPUS=4", "NODES=2").stdout
    job = make("-n", "slurm", "GPUS=4", "NODES=2").stdout
    assert "gpus=4" in run and "nodes=2" in run and "gpus=4" in job and "nodes=2" in job


def test_report_refuses_ref_and_names_ref_run():
    out = make("-n", "report", "RUN=r", "REF=finetune")
    assert out.returncode != 0 and "REF_RUN" in out.stderr
    assert "--ref other/run" in make("-n", "report", "RUN=r", "REF_RUN=other/run").stdout
