"""Results matrix, Markdown, Δ, forgetting, compare, the report CLI, atomic writes and plots."""
import json
import math

import numpy as np
import pytest
import torch

from lhl.core.io import atomic_torch_save, atomic_write_json, atomic_write_text
from lhl.reporting.plots import plot_compare, plot_forgetting, save_gallery
from lhl.reporting.aggregate import compare
from lhl.reporting.render import arrow, render_markdown, write_results
from lhl.cli import main
from lhl.cli.report import cli
from lhl.reporting.report import report
from lhl.runs.results import Results
from lhl.reporting.scores import delta, delta_per_task, final_metrics, forgetting
from lhl.tasks.depth import DepthTask
from lhl.tasks.normal import NormalTask
from lhl.tasks.semantic import SemanticTask

SPECS = [SemanticTask("semantic", 13), DepthTask("depth", 1), NormalTask("normal", 3)]


def _run(method="had", seed=0, sem=(0.5, 0.8, 0.4, 0.6), depth=(0.5, 0.2)):
    """Two phases (semantic, then depth); semantic drops from (miou, pixacc) = sem[:2] to sem[2:]."""
    r = Results.from_specs(SPECS[:2], dataset="nyuv2", sequence="nyu_s2", method=method, seed=seed)
    r.add_phase(0, "semantic", {"semantic": {"miou": sem[0], "pixacc": sem[1]}})
    r.add_phase(1, ["depth"], {"semantic": {"miou": sem[2], "pixacc": sem[3]},
                               "depth": {"abs_err": depth[0], "rel_err": depth[1]}})
    return r


def _single_task_ref():
    r = Results.from_specs(SPECS[:2], dataset="nyuv2", sequence="nyu_s2", method="single_task", seed=0,
                           independent_phases=True)
    r.add_phase(0, "semantic", {"semantic": {"miou": 0.5, "pixacc": 0.75}})
    # a fresh model in phase 1: whatever it reports for semantic is not the reference
    r.add_phase(1, "depth", {"semantic": {"miou": 0.01, "pixacc": 0.02}, "depth": {"abs_err": 0.4, "rel_err": 0.25}})
    return r


# --- Results ---------------------------------------------------------------------------------
def test_save_load_round_trip_and_replace(tmp_path):
    r = _run()
    r.add_phase(1, "depth", {"semantic": {"miou": 0.4, "pixacc": 0.6},
                             "depth": {"abs_err": 0.5, "rel_err": torch.tensor(0.2)}})  # resumed phase
    r.add_phase(2, "normal", {"normal": {"mean": float("nan")}})
    r.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]  # the data model renders nothing
    write_results(r, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json", "results.md"]
    stored = json.loads((tmp_path / "results.json").read_text())
    assert stored["phases"][2]["metrics"]["normal"]["mean"] is None  # NaN is written as null
    back = Results.load(tmp_path)
    assert [p["phase"] for p in back.phases] == [0, 1, 2]
    assert back.matrix("semantic", "miou") == [0.5, 0.4, None]
    assert back.matrix("depth", "rel_err")[1] == pytest.approx(0.2)
    assert math.isnan(back.phases[2]["metrics"]["normal"]["mean"])
    assert back.meta["tasks"] == ["semantic", "depth", "normal"]
    assert back.meta["directions"]["depth"] == {"abs_err": False, "rel_err": False}
    assert back.meta["main_metric"] == {"semantic": "miou", "depth": "abs_err"}


def test_per_class_details_round_trip_and_tables(tmp_path):
    """A semantic task's per-class IoU (NaN: class in neither prediction nor label) is kept beside
    the metrics, written as null, read back, named by meta class_names in results.md and in the
    report, and left out of every score."""
    r = Results.from_specs(SPECS[:2], dataset="nyuv2", method="had", class_names={"semantic": ["wall", "floor", "tv"]})
    r.add_phase(0, "semantic", {"semantic": {"miou": 0.5, "pixacc": 0.8}},
                {"semantic": {"class_iou": [0.75, 0.25, float("nan")]}})
    r.add_phase(1, "depth", {"semantic": {"miou": 0.4, "pixacc": 0.7}, "depth": {"abs_err": 0.5, "rel_err": 0.2}},
                {"semantic": {"class_iou": torch.tensor([0.6, 0.2, 0.0])}})
    write_results(r, tmp_path)
    assert json.loads((tmp_path / "results.json").read_text())["phases"][0]["details"]["semantic"]["class_iou"][2] is None
    back = Results.load(tmp_path)
    first, second = back.class_iou("semantic")
    assert first[:2] == [0.75, 0.25] and math.isnan(first[2]) and second == pytest.approx([0.6, 0.2, 0.0])
    assert back.class_names("semantic") == ["wall", "floor", "tv"] and back.class_names("depth") is None
    md = (tmp_path / "results.md").read_text()
    assert "## Per-class IoU: semantic" in md and "| tv | — | 0.0000 |" in md and "| wall | 0.7500 | 0.6000 |" in md
    assert "| floor | 0.2500 | 0.2000 |" in report(tmp_path)
    assert final_metrics(back)["semantic"] == {"miou": 0.4, "pixacc": 0.7}
    assert "Per-class" not in render_markdown(_run())  # nothing recorded: no table


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="results.json"):
        Results.load(tmp_path)
    bad = tmp_path / "results.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match=str(bad)):
        Results.load(tmp_path)
    bad.write_text(json.dumps({"meta": {}}))
    with pytest.raises(ValueError, match="malformed"):
        Results.load(bad)


def test_markdown_has_phases_numbers_and_summary():
    md = render_markdown(_run())
    assert "## Phase 0 (trained: semantic)" in md and "## Phase 1 (trained: depth)" in md
    for v in ("0.5000", "0.8000", "0.4000", "0.6000", "0.2000"):
        assert v in md
    assert "| phase | semantic miou ↑ | depth abs_err ↓ |" in md
    assert "| 0 (semantic) | 0.5000 | — |" in md
    assert "| 1 (depth) | 0.4000 | 0.5000 |" in md
    assert "**Final (after phase 1):**" in md


# --- Δ and forgetting ---------------------------------------------------------------------------
def test_final_metrics_single_task_takes_training_phase():
    assert final_metrics(_single_task_ref()) == {"semantic": {"miou": 0.5, "pixacc": 0.75},
                                                 "depth": {"abs_err": 0.4, "rel_err": 0.25}}
    assert final_metrics(_run())["semantic"] == {"miou": 0.4, "pixacc": 0.6}


def test_final_metrics_independent_phases_flag(tmp_path):
    """The meta flag, not the method name, picks the training phase; old files (no flag) still work."""
    flagged = _single_task_ref().to_dict()
    flagged["meta"]["method"] = "one_net_per_task"
    old = _single_task_ref().to_dict()
    del old["meta"]["independent_phases"]
    expected = {"semantic": {"miou": 0.5, "pixacc": 0.75}, "depth": {"abs_err": 0.4, "rel_err": 0.25}}
    for name, data in (("flagged", flagged), ("old", old)):
        path = tmp_path / name / "results.json"
        path.parent.mkdir()
        path.write_text(json.dumps(data))
        assert final_metrics(Results.load(path)) == expected, name
    assert _run().meta["independent_phases"] is False
    assert final_metrics(_run())["semantic"] == {"miou": 0.4, "pixacc": 0.6}


def test_arrow():
    assert (arrow(True), arrow(False), arrow(None)) == (" ↑", " ↓", "")


def test_delta_hand_example_mixed_directions():
    per_task = delta_per_task(_run(), _single_task_ref())
    # semantic (higher better): 50 * ((0.4-0.5)/0.5 + (0.6-0.75)/0.75) = -20
    # depth (lower better): 50 * (-(0.5-0.4)/0.4 - (0.2-0.25)/0.25) = -2.5
    assert per_task == pytest.approx({"semantic": -20.0, "depth": -2.5})
    assert delta(_run(), _single_task_ref()) == pytest.approx(-11.25)
    assert delta(_single_task_ref(), _single_task_ref()) == pytest.approx(0.0)


def test_forgetting_hand_example():
    r = _run()
    r.add_phase(2, "normal", {"semantic": {"miou": 0.3, "pixacc": 0.6},
                              "depth": {"abs_err": 0.6, "rel_err": 0.15},
                              "normal": {"mean": 30.0}})
    f = forgetting(r)
    assert set(f) == {"semantic", "depth"}  # the task of the last phase is not scored
    assert f["semantic"] == pytest.approx({"miou": 0.2, "pixacc": 0.2})  # 0.5 -> 0.3, 0.8 -> 0.6
    assert f["depth"] == pytest.approx({"abs_err": 0.1, "rel_err": -0.05})  # worse, better
    rel = forgetting(r, relative=True)
    assert rel["semantic"] == pytest.approx({"miou": 40.0, "pixacc": 25.0})
    assert rel["depth"] == pytest.approx({"abs_err": 20.0, "rel_err": -25.0})


# --- report, CLI, compare -------------------------------------------------------------------------
def test_report_and_cli(tmp_path, capsys):
    run, ref = tmp_path / "run", tmp_path / "ref"
    _run().save(run)
    _single_task_ref().save(ref)
    md = report(run, ref)
    assert "Δ = -11.25%" in md and "0.2000" in md  # forgetting of pixacc
    out = tmp_path / "out" / "report.json"
    assert cli([str(run), "--ref", str(ref), "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["delta"] == pytest.approx(-11.25)
    assert data["forgetting"]["semantic"]["miou"] == pytest.approx(0.1)
    assert "Δ = -11.25%" in capsys.readouterr().out
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "missing" in capsys.readouterr().err


def test_compare_mean_std(tmp_path):
    dirs = {}
    for method, sems in {"had": [(0.5, 0.8, 0.4, 0.6), (0.5, 0.8, 0.6, 0.6)],
                         "finetune": [(0.5, 0.8, 0.1, 0.3), (0.5, 0.8, 0.1, 0.3)]}.items():
        dirs[method] = []
        for seed, sem in enumerate(sems):
            d = tmp_path / f"{method}_{seed}"
            _run(method, seed, sem=sem).save(d)
            dirs[method].append(d)
    ref = tmp_path / "ref"
    _single_task_ref().save(ref)
    md, obj = compare(dirs, ref=ref)
    had = obj.methods["had"]
    assert had.final["semantic"]["miou"] == pytest.approx({"mean": 0.5, "std": math.sqrt(0.02), "n": 2})
    assert had.final["depth"]["abs_err"]["std"] == 0.0
    # Δ semantic per seed: 50*(-0.2 - 0.2) = -20 and 50*(0.2 - 0.2) = 0; depth -2.5 both
    assert had.delta_per_task["semantic"]["mean"] == pytest.approx(-10.0)
    assert had.delta["mean"] == pytest.approx((-11.25 - 1.25) / 2)
    assert had.delta["std"] == pytest.approx(math.sqrt(2 * 5.0 ** 2))
    assert had.forgetting["semantic"]["miou"]["mean"] == pytest.approx(0.0)
    assert obj.methods["finetune"].forgetting["semantic"]["miou"]["mean"] == pytest.approx(0.4)
    assert "0.5000 ± 0.1414" in md and "finetune (n=2)" in md and "## Δ vs reference" in md
    assert "| had | -6.25 ± 7.07 |" in md  # the sign belongs to the mean, not the spread
    # relative forgetting of the main metric: 0.5 -> 0.1 is 80 % of the learned mIoU on both seeds;
    # had's +20 % and -20 % average to 0; depth, learned in the last phase, has none
    assert "## Relative forgetting of the main metric" in md
    assert "| finetune | +80.0 ± 0.0 | — |" in md and "| had | +0.0 ± 28.3 | — |" in md
    md2, obj2 = compare(dirs | {"single_task": [ref]}, ref="single_task")
    assert obj2.methods["single_task"].delta["mean"] == pytest.approx(0.0)
    assert "| single_task | +0.00 |" in md2  # one run: the value, no ± 0


# --- atomic writes ----------------------------------------------------------------------------------
def test_atomic_writes_leave_no_temp_files(tmp_path):
    atomic_write_text(tmp_path / "a.txt", "hello")
    atomic_write_json(tmp_path / "b.json", {"z": 1, "a": [np.float32(0.5), float("inf")]})
    atomic_torch_save({"w": torch.ones(2)}, tmp_path / "c.pt")
    assert (tmp_path / "a.txt").read_text() == "hello"
    assert (tmp_path / "b.json").read_text() == '{\n  "a": [\n    0.5,\n    null\n  ],\n  "z": 1\n}\n'
    assert torch.equal(torch.load(tmp_path / "c.pt")["w"], torch.ones(2))
    with pytest.raises(Exception):
        atomic_torch_save({"f": lambda x: x}, tmp_path / "c.pt")  # unpicklable: old file survives
    assert torch.equal(torch.load(tmp_path / "c.pt")["w"], torch.ones(2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.json", "c.pt"]


# --- plots --------------------------------------------------------------------------------------------
def _is_png(path):
    data = path.read_bytes()
    return data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000


def test_plots_write_pngs(tmp_path):
    plot_forgetting(_run(), tmp_path / "forgetting.png")
    d = tmp_path / "run"
    _run().save(d)
    _, obj = compare({"had": [d], "finetune": [d]})
    plot_compare(obj, tmp_path / "compare.png")
    img = np.zeros((8, 10, 3), dtype=np.uint8)
    img[:, :5] = 255
    save_gallery([[("image", img), ("label", img)], [("pred", img)]], tmp_path / "gallery.png")
    for name in ("forgetting.png", "compare.png", "gallery.png"):
        assert _is_png(tmp_path / name), name
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["compare.png", "forgetting.png", "gallery.png"]
    with pytest.raises(ValueError):
        save_gallery([], tmp_path / "empty.png")
