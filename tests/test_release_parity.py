"""`lhl release-parity`: the release's printout parsed in lhl's names and units, Welch's test against
hand-computed values, the agreement rule, and the command end to end on a fake log and run folders."""
from __future__ import annotations

import json
import math

import pytest

from lhl.cli import main
from lhl.reporting.ranks import welch_test
from lhl.runs.results import Results
from lhl.tools.release_parity import compare_rows, parse_release_log

LOG = """2026-12-02 02:06:59 [trainer.py] => semantic results are ['0.1025', '0.5844'] depth results are ['2.1858', '0.7253'], normal results are ['0.0000', '0.0000', '0.0000', '0.0000', '0.0000']
Task 3, Epoch 5/4 => ...
2026-12-02 02:10:05 [trainer.py] => semantic results are ['0.1060', '0.5460'] depth results are ['2.4000', '0.7942'], normal results are ['39.6768', '34.7331', '0.1094', '0.3055', '0.4282']
2026-12-02 02:10:05 [trainer.py] => ======== Finishing Run ========
"""
DIRECTIONS = {"semantic": {"miou": True, "pixacc": True}, "depth": {"abs_err": False, "rel_err": False},
              "normal": {"mean": False, "median": False, "within_11.25": True, "within_22.5": True, "within_30": True}}


def test_the_last_line_is_the_final_row_in_lhl_units():
    m = parse_release_log(LOG)
    assert m["semantic"] == {"miou": 0.1060, "pixacc": 0.5460}
    assert m["depth"] == {"abs_err": 2.4, "rel_err": 0.7942}
    assert m["normal"]["mean"] == 39.6768 and m["normal"]["median"] == 34.7331
    assert m["normal"]["within_11.25"] == pytest.approx(10.94)  # fraction -> percent, as lhl reports
    assert m["normal"]["within_30"] == pytest.approx(42.82)


def test_a_log_without_results_names_itself():
    with pytest.raises(ValueError, match="seed7.log: no 'semantic results are"):
        parse_release_log("Starting new run\n", where="seed7.log")


def test_welch_by_hand():
    # a = 1, 2, 3 (mean 2, var 1); b = 2, 4, 6 (mean 4, var 4): se² = 1/3 + 4/3 = 5/3,
    # df = (5/3)² / ((1/3)²/2 + (4/3)²/2) = (25/9) / (17/18) = 50/17
    w = welch_test([1, 2, 3], [2, 4, 6])
    assert w["mean"] == pytest.approx(-2.0)
    assert w["df"] == pytest.approx(50 / 17)
    assert w["t"] == pytest.approx(-2.0 / math.sqrt(5 / 3))
    scipy = pytest.importorskip("scipy.stats")
    ref = scipy.ttest_ind([1, 2, 3], [2, 4, 6], equal_var=False)
    assert w["p"] == pytest.approx(ref.pvalue, rel=1e-6)
    half = scipy.t.ppf(0.975, 50 / 17) * math.sqrt(5 / 3)
    assert w["ci95"] == pytest.approx([-2.0 - half, -2.0 + half])
    assert welch_test([1.0], [2.0, 3.0])["ci95"] is None


def test_agreement_is_within_the_larger_seed_std():
    release = [{"depth": {"abs_err": v, "rel_err": 0.5}} for v in (2.0, 2.2, 2.4)]  # std 0.2
    close = [{"depth": {"abs_err": v, "rel_err": 0.5}} for v in (2.2, 2.3, 2.4)]    # mean +0.1
    far = [{"depth": {"abs_err": v, "rel_err": 0.5}} for v in (2.6, 2.7, 2.8)]      # mean +0.5
    rows = {r["metric"]: r for r in compare_rows(release, close, DIRECTIONS)}
    assert set(rows) == {"abs_err", "rel_err"}  # only what both sides report
    assert rows["abs_err"]["agree"] and rows["rel_err"]["agree"]
    assert not compare_rows(release, far, DIRECTIONS)[0]["agree"]


def test_the_command_end_to_end(tmp_path):
    logs, folders = [], []
    for seed, (miou, dep) in enumerate([(0.10, 2.4), (0.11, 2.2), (0.09, 2.3)]):
        log = tmp_path / f"release_seed{seed}.log"
        log.write_text(f"semantic results are ['{miou}', '0.5'] depth results are ['{dep}', '0.7'], "
                       "normal results are ['40.0', '35.0', '0.1', '0.3', '0.4']\n")
        logs.append(str(log))
        r = Results(dict(method="had_faithful", seed=seed, tasks=["semantic", "depth", "normal"],
                         directions=DIRECTIONS, main_metric={"semantic": "miou", "depth": "abs_err", "normal": "mean"}))
        r.add_phase(0, "semantic", {"semantic": {"miou": miou + 0.005, "pixacc": 0.5}})
        r.add_phase(2, "normal", {"semantic": {"miou": miou, "pixacc": 0.5}, "depth": {"abs_err": dep + 0.01, "rel_err": 0.7},
                                  "normal": {"mean": 40.5, "median": 35.0, "within_11.25": 10.0,
                                             "within_22.5": 30.0, "within_30": 40.0}})
        r.save(tmp_path / f"seed{seed}")
        folders.append(str(tmp_path / f"seed{seed}"))
    out = tmp_path / "parity.md"
    assert main(["release-parity", "--release", *logs, "--lhl", *folders, "--out", str(out)]) == 0
    text = out.read_text()
    assert "| depth abs_err ↓ | 2.400 / 2.200 / 2.300 | 2.300 ± 0.100 | 2.410 / 2.210 / 2.310 | 2.310 ± 0.100 |" in text
    rows = {(r["task"], r["metric"]): r for r in json.loads(out.with_suffix(".json").read_text())["rows"]}
    assert len(rows) == 9
    assert rows[("depth", "abs_err")]["agree"] and rows[("semantic", "miou")]["agree"]
    assert not rows[("normal", "mean")]["agree"]  # +0.5° with no spread on either side
    with pytest.raises(SystemExit, match="--lhl .*nowhere: no results.json"):
        main(["release-parity", "--release", *logs, "--lhl", str(tmp_path / "nowhere")])
