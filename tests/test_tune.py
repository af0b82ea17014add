"""`lhl tune`: declared knobs, the tuning stream, selection, and tuned.yaml into compare."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from conftest import tiny_overrides
from lhl.config import ConfigError
from lhl.core.registry import METHODS
from lhl.data.tuning import held_out
from lhl.runs.results import Results
from lhl.reporting.tuning import new_task_delta, non_dominated, on_edge, select
from lhl.tools import compare, tune

UNTUNED = {"finetune", "joint", "single_task", "spg"}


def test_every_method_with_a_stability_weight_declares_a_five_point_grid_from_the_finetune_end():
    for name in (n for n in METHODS if METHODS.get(n).__module__.startswith("lhl.methods")):
        knob = METHODS.get(name).stability
        if name in UNTUNED:
            assert knob is None, name
            continue
        assert knob is not None, f"{name} declares no stability knob"
        assert len(knob.grid) == 5 and list(knob.grid) == sorted(knob.grid), name
        if knob.space == "log":
            assert knob.grid[0] == 0.0, f"{name}: the finetune end of a weight is 0"


def test_a_method_without_a_knob_is_refused_with_the_methods_that_have_one():
    opts = tune.parse(["seq=synthetic_small_s1", "methods=lwf spg"])
    with pytest.raises(ConfigError, match="method 'spg' declares no stability knob.*Methods with a knob: .*lwf"):
        tune.knobs(opts)


def test_grid_widening_steps_one_log_step_past_the_edge():
    lwf, sgp, derpp = (METHODS.get(n).stability for n in ("lwf", "sgp", "derpp"))
    assert lwf.beyond(lwf.grid, "stable") == pytest.approx(10.0 * 10.0 / 3.0, rel=1e-5)
    assert lwf.beyond(lwf.grid, "plastic") == pytest.approx(0.3 * 0.3 / 1.0)
    assert sgp.beyond(sgp.grid, "stable") == pytest.approx(1 - 0.01 * 0.01 / 0.03, rel=1e-5)
    assert sgp.beyond(sgp.grid, "plastic") is None
    assert derpp.overrides(0.1) == ["method.alpha=0.1", "method.beta=0.5"]


def _pt(value, d, pl=0.0, st=0.0):
    return {"value": value, "delta": {"mean": d}, "plasticity": {"mean": pl}, "stability": {"mean": st}}


def test_selection_objectives_edges_and_frontier():
    pts = [_pt(0.0, 0.0, 0.0, -30.0), _pt(1.0, 4.0, -10.0, -10.0), _pt(3.0, 6.0, -25.0, -4.0),
           _pt(10.0, 5.0, -40.0, -1.0)]
    assert select(pts, "delta") == 3.0
    assert select(pts, "plasticity_decay", p=0.2) == 1.0  # 3 and 10 lose more than 20 % plasticity
    assert select(pts, "plasticity_decay", p=0.5) == 10.0
    assert on_edge(pts, 10.0) == "stable" and on_edge(pts, 1.0) == "plastic" and on_edge(pts, 3.0) is None
    assert non_dominated(pts) == [0.0, 1.0, 3.0, 10.0]
    assert non_dominated(pts + [_pt(0.3, 0.0, -20.0, -20.0)]) == [0.0, 1.0, 3.0, 10.0]
    with pytest.raises(ValueError, match="objective"):
        select(pts, "best_test_score")


def _results(seed, after):
    meta = {"seed": seed, "tasks": ["a", "b"], "directions": {"a": {"acc": True}, "b": {"err": False}}}
    return Results(meta, [{"phase": i, "trained": [t], "metrics": m} for i, (t, m) in enumerate(after)])


def test_plasticity_is_the_new_tasks_gain_right_after_its_phase_against_finetune():
    run = _results(0, [("a", {"a": {"acc": 0.5}}), ("b", {"a": {"acc": 0.4}, "b": {"err": 1.2}})])
    ref = _results(0, [("a", {"a": {"acc": 0.5}}), ("b", {"a": {"acc": 0.1}, "b": {"err": 1.0}})])
    # b's error is 20 % worse than finetune's right after phase 1; phase 0 is every method's alike
    assert new_task_delta(run, ref) == pytest.approx(-20.0)


def test_held_out_takes_the_fraction_of_every_phase_slice_and_keeps_the_rest():
    kept, held = held_out(30, 3, 0.2, split_seed=0)
    assert len(held) == 6 and not set(kept) & set(held) and sorted(kept + held) == list(range(30))
    assert [sum(lo <= i < lo + 10 for i in held) for lo in (0, 10, 20)] == [2, 2, 2]
    assert held_out(30, 3, 0.2, split_seed=0) == (kept, held)
    with pytest.raises(ValueError, match="val_fraction"):
        held_out(30, 3, 1.0)


@pytest.fixture(scope="module")
def tuned(tmp_path_factory, synth_cache):
    """A two-phase tiny sequence, finetune and LwF at one weight, one seed, on the tuning stream,
    with every generated synthetic view recorded (which seeds were ever drawn)."""
    from lhl.data.synthetic_rooms import writer

    tmp = tmp_path_factory.mktemp("tune")
    seeds_drawn = set()
    original = writer.generate_sample

    def spy(seed, split, index, height, width):
        seeds_drawn.add(int(seed))
        return original(seed, split, index, height, width)

    mp = pytest.MonkeyPatch()
    mp.setattr(writer, "generate_sample", spy)
    argv = ["methods=lwf", "grid.lwf=1", "seeds=0", "widen=0",
            *tiny_overrides(tmp, tmp / "cache", **{"sequence.tasks": "[semantic,depth]"})]
    try:
        code = tune.cli(argv)
    finally:
        mp.undo()
    return tmp, argv, code, seeds_drawn


def test_selection_never_reads_the_reported_split(tuned):
    from lhl.data.sources.synthetic import SyntheticRooms

    tmp, _, code, seeds_drawn = tuned
    assert code == 0
    assert seeds_drawn == {SyntheticRooms.TUNING_SEED_OFFSET}, "a reported-split view was generated"
    for cfg in Path(tmp, "runs").rglob("config.yaml"):
        assert yaml.safe_load(cfg.read_text())["data"]["stream"] == "tune", cfg


def test_a_run_of_the_reported_split_is_refused_by_selection(tuned):
    from lhl.tools.tune_report import ReportedSplitRead, finished_results

    tmp = tuned[0]
    folder = next(p.parent for p in Path(tmp, "runs").rglob("results.json") if "lwf" in str(p))
    cfg = yaml.safe_load((folder / "config.yaml").read_text())
    cfg["data"]["stream"] = "report"
    (folder / "config.yaml").write_text(yaml.safe_dump(cfg))
    try:
        with pytest.raises(ReportedSplitRead, match="data.stream=report"):
            finished_results(folder)
    finally:
        cfg["data"]["stream"] = "tune"
        (folder / "config.yaml").write_text(yaml.safe_dump(cfg))


def test_tuned_yaml_round_trips_into_compare(tuned):
    tmp, argv, _, _ = tuned
    path = Path(tmp, "runs", "synthetic_s1", "tuned.yaml")
    data = yaml.safe_load(path.read_text())
    entry = data["methods"]["lwf"]
    assert entry["chosen"] == 1.0 and entry["overrides"] == ["method.new=1.0"] and entry["stream"] == "tune"
    assert [p["value"] for p in entry["points"]] == [1.0] and entry["points"][0]["delta"]["n"] == 1
    assert set(entry["points"][0]["forgetting"]) == {"semantic"}  # the task learned before the last phase
    for picture in ("frontier", "delta_vs_weight", "forgetting_vs_weight"):
        assert list(Path(tmp, "runs", "synthetic_s1", "tune").glob(f"*/{picture}.png")), picture
    rest = [a for a in argv if not a.startswith(("methods=", "grid.", "seeds=", "widen="))]
    opts = compare.parse(["methods=lwf finetune", "seeds=3", f"tuned={path}", *rest])
    by_method = {cfg.method.name: (args, cfg) for _, args, cfg in compare.plan(opts)}
    assert by_method["lwf"][1].method.new == 1.0 and by_method["lwf"][1].data.stream == "report"
    assert "method.new=1.0" not in by_method["finetune"][0]
    with pytest.raises(ConfigError, match="chosen for sequence 'synthetic_s1', not 'synthetic_s2'"):
        compare.plan(compare.parse(["seq=synthetic_s2", "methods=lwf", f"tuned={path}"]))


def test_the_documented_grids_are_the_declared_ones():
    """docs/benchmarks/tuning.md's knob table is the methods' own (no second copy to drift)."""
    page = Path(__file__).resolve().parents[1] / "docs" / "benchmarks" / "tuning.md"
    rows = {}
    for line in page.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[1].startswith("`method."):
            rows[cells[0].split()[0]] = (cells[1].strip("`")[len("method."):], [float(v) for v in cells[2].split(",")])
    for name, (option, grid) in rows.items():
        knob = METHODS.get(name).stability
        assert (knob.option, list(knob.grid)) == (option, grid), name
    assert set(rows) == {n for n in METHODS if METHODS.get(n).stability is not None
                         and METHODS.get(n).__module__.startswith("lhl.methods")}


def test_compare_reports_plasticity_against_the_reference(tmp_path):
    from lhl.reporting.aggregate import compare as aggregate

    run = _results(0, [("a", {"a": {"acc": 0.5}}), ("b", {"a": {"acc": 0.4}, "b": {"err": 1.2}})])
    ref = _results(0, [("a", {"a": {"acc": 0.5}}), ("b", {"a": {"acc": 0.1}, "b": {"err": 1.0}})])
    run.meta["main_metric"] = ref.meta["main_metric"] = {"a": "acc", "b": "err"}
    run.save(tmp_path / "m"), ref.save(tmp_path / "ft")
    markdown, obj = aggregate({"m": [tmp_path / "m"], "finetune": [tmp_path / "ft"]}, ref="finetune")
    assert obj.methods["m"].plasticity["mean"] == pytest.approx(-20.0)
    assert "## Stability and plasticity (%)" in markdown


def test_tune_goes_out_as_a_slurm_job_array_with_a_tune_aggregation(tmp_path, monkeypatch, capsys):
    from lhl.cli import main

    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch: the scripts are written, not submitted
    assert main(["tune", "seq=synthetic_small_s1", "methods=lwf", "grid.lwf=0,1", "seeds=100",
                 f"run.out_dir={tmp_path}", "slurm=true", "submit=no", "time=01:00:00"]) == 0
    folder = next(tmp_path.glob("synthetic_small_s1/tune/*/slurm"))
    tasks = sorted(folder.glob("task_*.sbatch"))
    assert len(tasks) == 3 and all("data.stream=tune" in t.read_text() for t in tasks)
    assert "method.new=1.0" in tasks[2].read_text()
    agg = (folder / "aggregate.sbatch").read_text()
    assert "-m lhl tune" in agg and "aggregate=true" in agg and "slurm=true" not in agg


def test_a_dataset_without_a_generator_is_tuned_on_held_out_train_images_and_never_opens_val():
    from omegaconf import OmegaConf
    from torch.utils.data import Dataset

    from lhl.core.registry import DATASETS
    from lhl.data.datamodule import build_dataset

    opened = []

    class Probe(Dataset):
        CLASSES = ("x", "y")

        def __init__(self, root=None, split="train", tasks=("a",)):
            opened.append(split)
            self.n = {"train": 40, "val": 10}[split]

        def __len__(self):
            return self.n

        def __getitem__(self, i):
            return {"index": i}

    DATASETS._items["tune_probe"] = Probe  # unregistered at the end (the registry is process-wide)
    try:
        _held_out_probe(OmegaConf, build_dataset, opened)
    finally:
        DATASETS._items.pop("tune_probe", None)


def _held_out_probe(OmegaConf, build_dataset, opened):
    cfg = OmegaConf.create({"dataset": "tune_probe", "root": None, "options": {}, "stream": "tune",
                            "val_fraction": 0.25, "shuffle_split": False, "split_seed": 0})
    val = build_dataset(cfg, "val", ["a", "b"], index_tasks=["a", "b"])
    train = build_dataset(cfg, "train", ["a"], index_tasks=["a", "b"])
    assert opened == ["train", "train"], "the reported split was opened"
    assert len(val) == 10 and len(train) == 30 and val.CLASSES == ("x", "y")
    assert not {val[i]["index"] for i in range(len(val))} & {train[i]["index"] for i in range(len(train))}
    assert sum(val[i]["index"] < 20 for i in range(len(val))) == 5  # a quarter of each phase's slice
    report = OmegaConf.merge(cfg, {"stream": "report"})
    assert len(build_dataset(report, "val", ["a"])) == 10 and opened[-1] == "val"


@pytest.mark.parametrize("method", [n for n in METHODS if getattr(METHODS.get(n).stability, "zero_is_finetune", False)])
def test_the_finetune_end_of_a_distillation_weight_is_finetune(tmp_path, synth_cache, method):
    """At new = 0 no old head runs, so Adam's coupled weight decay cannot erase the old heads
    (which it did while they ran with a zero-weighted term): the run is finetune's, bit for bit."""
    import json

    from lhl.config import load_config
    from lhl.engine.runner import run

    def metrics(*extra):
        folder = run(load_config([], [*tiny_overrides(tmp_path, synth_cache), *extra]))
        return json.loads((Path(folder) / "results.json").read_text())["phases"]

    finetune = metrics("method=finetune")
    knob = METHODS.get(method).stability
    assert metrics(f"method={method}", *knob.overrides(knob.grid[0])) == finetune
