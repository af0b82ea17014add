"""The paper's comparison scores against hand-computed values on a toy set: 3 methods
(finetune = the reference, lwf, had), 2 tasks (seg miou ↑ learned in phase 0, dep abs_err ↓ in
phase 1), 2 seeds."""
from __future__ import annotations

import json
import math
import sys

import pytest

from lhl.reporting.aggregate import compare
from lhl.reporting.ranks import (average_ranks, backward_transfer, delta_after_phases, one_sample_test, paired_test,
                                 t_quantile)
from lhl.runs.results import Results

#: method -> seed -> (seg after phase 0, seg final, dep final)
TOY = {"finetune": {0: (0.50, 0.40, 0.50), 1: (0.70, 0.60, 0.50)},
       "lwf": {0: (0.50, 0.44, 0.55), 1: (0.70, 0.60, 0.45)},
       "had": {0: (0.50, 0.48, 0.50), 1: (0.70, 0.66, 0.40)}}


def toy_run(method, seed) -> Results:
    s0, s1, d1 = TOY[method][seed]
    r = Results(dict(method=method, seed=seed, tasks=["seg", "dep"],
                     directions={"seg": {"miou": True}, "dep": {"abs_err": False}},
                     main_metric={"seg": "miou", "dep": "abs_err"}))
    r.add_phase(0, "seg", {"seg": {"miou": s0}})
    r.add_phase(1, "dep", {"seg": {"miou": s1}, "dep": {"abs_err": d1}})
    return r


@pytest.fixture
def toy(tmp_path):
    dirs = {}
    for m, seeds in TOY.items():
        for seed in seeds:
            d = tmp_path / m / f"seed{seed}"
            toy_run(m, seed).save(d)
            dirs.setdefault(m, []).append(d)
    return dirs


def test_average_ranks_share_ties():
    assert average_ranks({"a": 0.5, "b": 0.5, "c": 0.4}, higher_is_better=False) == {"c": 1, "a": 2.5, "b": 2.5}
    assert average_ranks({"a": 1.0, "b": 3.0, "c": 2.0}, higher_is_better=True) == {"b": 1, "c": 2, "a": 3}


def test_compare_pairs_seeds_and_ranks(toy):
    md, obj = compare(toy, ref="finetune")
    m = obj.methods
    # lwf: seed 0 seg +10 %, dep -10 % -> 0; seed 1 seg 0, dep +10 % -> 5
    assert m["lwf"].delta_pairing == "seed"
    assert m["lwf"].delta_per_seed == pytest.approx({"0": 0.0, "1": 5.0})
    assert m["lwf"].delta["mean"] == pytest.approx(2.5) and m["lwf"].delta["std"] == pytest.approx(5 / math.sqrt(2))
    # had: seed 0 (+20 + 0) / 2 = 10; seed 1 (+10 + 20) / 2 = 15
    assert m["had"].delta["mean"] == pytest.approx(12.5)
    assert m["finetune"].delta["mean"] == pytest.approx(0.0)
    # means over seeds: miou 0.50 / 0.52 / 0.57 -> 3, 2, 1; abs_err 0.50 / 0.50 / 0.45 -> 2.5, 2.5, 1
    assert m["had"].mean_rank == pytest.approx(1.0)
    assert m["lwf"].mean_rank == pytest.approx(2.25)
    assert m["finetune"].mean_rank == pytest.approx(2.75)
    assert [str(p) for p in toy["had"]] == m["had"].runs
    # Δ after phase 0: seg equal everywhere; after phase 1: the final Δ
    assert m["had"].delta_after_phases[0]["mean"] == pytest.approx(0.0)
    assert m["had"].delta_after_phases[1]["mean"] == pytest.approx(12.5)
    # relative backward transfer: seg 0.5 -> 0.48 (-4 %), 0.7 -> 0.66 (-5.714 %)
    assert m["had"].backward_transfer["mean"] == pytest.approx(-(4 + 40 / 7) / 2)
    assert "MR ↓" in md and "Δ after every phase" in md and "same seed" in md


def test_unmatched_seeds_fall_back_to_the_reference_mean(toy):
    _, obj = compare({"lwf": toy["lwf"], "finetune": toy["finetune"][:1]}, ref="finetune")
    # seed 1 has no reference run: both seeds against finetune seed 0 (its only run)
    assert obj.methods["lwf"].delta_pairing == "mean"
    assert obj.methods["lwf"].delta_per_seed["1"] == pytest.approx((50.0 + 10.0) / 2)


def test_helpers_on_one_run():
    had, ft = toy_run("had", 0), toy_run("finetune", 0)
    assert delta_after_phases(had, ft) == pytest.approx([0.0, 10.0])
    assert backward_transfer(ft) == pytest.approx(-20.0)


def test_paired_test_by_hand(monkeypatch):
    out = paired_test([10.0, 15.0], [0.0, 0.0])  # diffs 10, 15: mean 12.5, se 2.5, t 5, df 1
    assert out["mean"] == pytest.approx(12.5) and out["t"] == pytest.approx(5.0)
    assert out["ci95"] == pytest.approx([12.5 - 12.7062047 * 2.5, 12.5 + 12.7062047 * 2.5], rel=1e-6)
    assert out["p"] == pytest.approx(1 - 2 * math.atan(5) / math.pi, rel=1e-6)  # t with 1 df is Cauchy
    assert paired_test([1.0], [0.0])["ci95"] is None
    # the one-sample test is the paired test's engine: the same numbers for values against zeros
    assert one_sample_test([13.0, 12.0, 15.0]) == paired_test([13.0, 12.0, 15.0], [0.0] * 3)
    assert one_sample_test([20.0, 25.0])["ci95"] == pytest.approx([22.5 - 12.7062047 * 2.5, 22.5 + 12.7062047 * 2.5])
    assert one_sample_test([])["mean"] is None and one_sample_test([])["n"] == 0
    monkeypatch.setitem(sys.modules, "scipy.stats", None)  # the hand-written t distribution
    assert t_quantile(0.975, 1) == pytest.approx(12.7062047, rel=1e-6)
    assert t_quantile(0.975, 4) == pytest.approx(2.7764451, rel=1e-6)
    assert paired_test([10.0, 15.0], [0.0, 0.0])["p"] == pytest.approx(1 - 2 * math.atan(5) / math.pi, rel=1e-6)


def test_paper_tables_from_a_comparison(toy, tmp_path):
    from lhl.core.io import atomic_write_json
    from lhl.tools.paper import MAIN, parse, write_tables

    _, obj = compare(toy, ref="finetune")
    atomic_write_json(tmp_path / "compare.json", obj.to_dict())
    paths = write_tables(tmp_path / "compare.json", "main", "had", "finetune", ["finetune", "lwf", "had"])
    md = paths["md"].read_text()
    assert md.index("| finetune") < md.index("| lwf") < md.index("| had (")
    # lwf vs had per seed: (0 - 10, 5 - 15) -> -10 both: no spread, the mean alone
    assert "| -10.00 |" in md and "+12.50 ± 3.54" in md
    # finetune vs had: (-10, -15): mean -12.5, se 2.5, t(1) quantile 12.706
    assert "-12.50 [-44.27, +19.27] p=0.126" in md
    csv_lines = paths["csv"].read_text().splitlines()
    assert csv_lines[0].startswith("method,n,seg/miou/mean") and len(csv_lines) == 4
    tex = paths["tex"].read_text()
    assert "\\toprule" in tex and "$\\pm$" in tex and "had\\_" not in tex
    opts = parse(["table=main", "seq=x"])
    assert opts["methods"][:len(MAIN)] == MAIN and opts["ref"] == "finetune" and opts["against"] == "had_paper"
    opts = parse(["table=ablation", "seq=x"])
    assert opts["ref"] == "had_paper" and "had_paper_new_first" in opts["methods"]


def test_compare_pairs_every_method_with_had_and_lwf(toy):
    md, obj = compare(toy, ref="finetune")
    m = obj.methods
    # per-seed Δ: finetune 0 / 0, lwf 0 / 5, had 10 / 15 (see test_compare_pairs_seeds_and_ranks)
    ft_had = m["finetune"].paired_delta["had"]  # differences -10, -15
    half = 12.706 * (5 / math.sqrt(2)) / math.sqrt(2)  # t(0.975, 1) * sd / sqrt(n)
    assert ft_had["mean"] == pytest.approx(-12.5)
    assert ft_had["ci95"] == pytest.approx([-12.5 - half, -12.5 + half], rel=1e-3)
    assert m["finetune"].paired_delta["lwf"]["mean"] == pytest.approx(-2.5)
    # lwf - had = -10 on both seeds: no spread, so a mean without an interval
    assert m["lwf"].paired_delta["had"]["mean"] == pytest.approx(-10.0)
    assert m["lwf"].paired_delta["had"]["ci95"] is None
    assert "had" not in m["had"].paired_delta and m["had"].paired_delta["lwf"]["mean"] == pytest.approx(10.0)
    assert "Paired Δ difference vs had and lwf" in md
    # without the anchors among the methods there is no paired table
    md2, obj2 = compare({"finetune": toy["finetune"], "x": toy["lwf"]}, ref="finetune")
    assert obj2.methods["x"].paired_delta is None and "Paired" not in md2


def test_the_comparison_is_typed_and_round_trips_through_compare_json(toy, tmp_path):
    from lhl.core.io import atomic_write_json
    from lhl.reporting.comparison import Comparison, MethodSummary

    _, obj = compare(toy, ref="finetune")
    assert isinstance(obj, Comparison) and all(isinstance(e, MethodSummary) for e in obj.methods.values())
    data = obj.to_dict()
    assert "paired_delta" in data["methods"]["lwf"] and data["reference"]["runs"]
    atomic_write_json(tmp_path / "compare.json", data)
    back = Comparison.load(tmp_path)
    assert back.to_dict() == json.loads((tmp_path / "compare.json").read_text())
    assert back.methods["had"].delta["mean"] == pytest.approx(obj.methods["had"].delta["mean"])
    _, plain = compare({"had": toy["had"]})  # no reference: no Δ pairing written at all
    assert "delta_pairing" not in plain.to_dict()["methods"]["had"] and plain.methods["had"].delta is None
