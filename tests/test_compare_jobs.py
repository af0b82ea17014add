"""`lhl compare jobs=N`: the runs as N `lhl run` processes side by side, each on its share of threads."""
from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from conftest import tiny_overrides
from lhl.cli import main
from lhl.config import ConfigError, load_config
from lhl.engine.runner import run
from lhl.runs.results import Results
from lhl.tools.compare import parse
from lhl.tools.compare_jobs import log_name, run_jobs, threads_per_job


def test_threads_are_shared_out_and_never_zero():
    assert [threads_per_job(j, 4) for j in (1, 2, 3, 4, 8)] == [4, 2, 1, 1, 1]
    assert threads_per_job(2, 1) == 1


def test_jobs_is_a_whole_number_and_not_with_slurm(capsys):
    assert parse(["seq=s", "methods=a", "jobs=3"])["jobs"] == 3
    assert parse(["seq=s", "methods=a"])["jobs"] == 1
    for bad in ("0", "two", "-1", ""):
        with pytest.raises(ConfigError, match="jobs="):
            parse(["seq=s", "methods=a", f"jobs={bad}"])
    assert main(["compare", "seq=synthetic_small_s1", "methods=finetune", "jobs=2", "slurm=true", "submit=no"]) != 0
    assert "slurm=true submits each run as its own job" in capsys.readouterr().err


def test_a_failed_job_is_named_with_its_log_and_the_others_go_on(tmp_path, capsys):
    configs = [(label, [label], SimpleNamespace(run=SimpleNamespace(seed=s)))
               for label, s in (("ok", 0), ("bad", 1), ("ok", 2))]

    def cmd(args):
        code = 3 if args == ["bad"] else 0
        return [sys.executable, "-c", f"print('job {args[0]}'); raise SystemExit({code})"]

    failed = run_jobs(configs, 2, tmp_path / "logs", threads=1, cmd=cmd)
    assert failed == [("bad", 1, 3)]
    out = capsys.readouterr().out
    assert "3 runs, 2 at a time on 1 thread(s)" in out and out.count(": done in") == 2
    assert "bad / seed 1: FAILED (exit 3" in out and log_name("bad", 1) in out
    assert (tmp_path / "logs" / log_name("bad", 1)).read_text().strip() == "job bad"
    assert log_name("had paper.x=1/2", 0) == "had_paper.x=1_2_seed0.log"


def test_compare_with_two_jobs_makes_the_runs_one_thread_each_makes_in_turn(tmp_path, synth_cache, capsys):
    """Two seeds as two processes: both finished, logged, tabled; seed 0 equal to the same run made
    in this process on one thread (a job's thread count is the only thing it changes)."""
    base = [x for x in tiny_overrides(tmp_path / "jobs", synth_cache) if not x.startswith("seq=")]
    assert main(["compare", "seq=synthetic_s1", "methods=finetune", "seeds=0 1", "jobs=2", *base]) == 0
    out = capsys.readouterr().out
    assert "2 runs, 2 at a time on" in out and "comparison written to" in out
    folder = Path(out.split("comparison written to ")[1].split()[0])
    assert (folder / "compare.md").is_file()
    assert sorted(p.name for p in (folder / "logs").iterdir()) == ["finetune_seed0.log", "finetune_seed1.log"]
    runs = sorted((tmp_path / "jobs" / "runs" / "synthetic_s1" / "finetune").glob("*/seed*"))
    assert [r.name for r in runs] == ["seed0", "seed1"]
    assert all(len(Results.load(r).phases) == 3 for r in runs)

    threads = torch.get_num_threads()
    torch.set_num_threads(threads_per_job(2, threads))
    try:
        alone = run(load_config([], tiny_overrides(tmp_path / "alone", synth_cache) + ["method=finetune", "seed=0"]))
    finally:
        torch.set_num_threads(threads)
    assert Results.load(alone).phases == Results.load(runs[0]).phases
