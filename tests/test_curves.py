"""Learning curves within each phase: `eval.every_n_epochs`, the run folder's curves.json, the
convergence ratio and `lhl curves` (tiny synthetic runs on CPU)."""
from __future__ import annotations

import json

import lightning.pytorch as pl
import pytest
import torch

from conftest import CrashInPhase1, tiny_overrides
from lhl.cli import main
from lhl.config import load_config
from lhl.engine import runner as runner_mod
from lhl.runs.identity import run_folder_of
from lhl.engine.phase_trainer import val_every
from lhl.engine.runner import run
from lhl.reporting.curves import (
    check_short, convergence, curves_markdown, half_epoch, phase_tasks, reached, save_phase_curve,
)
from lhl.reporting.curves_over_seeds import convergence_over_seeds
from lhl.runs.results import Results

#: two phases (semantic, depth) of two epochs of 3 batches; LwF (a teacher) and dropout 0.5 in the
#: heads, a shuffled loader: the RNG matters
CURVE_ARGS = ["method=lwf", "sequence.tasks=[semantic,depth]", "model.backbone=resnet10t", "train.max_steps=-1",
              "train.epochs=2", "eval.gallery_samples=0", "logger=none"]


@pytest.fixture(scope="module")
def curve_run(tmp_path_factory, synth_cache):
    tmp = tmp_path_factory.mktemp("curves")
    return run(load_config([], tiny_overrides(tmp, synth_cache) + CURVE_ARGS + ["eval.every_n_epochs=1"]))


def test_curves_json_has_one_row_per_epoch_per_phase(curve_run):
    rows = json.loads((curve_run / "curves.json").read_text())
    assert [(r["phase"], r["epoch"], r["step"]) for r in rows] == [(0, 1, 3), (0, 2, 6), (1, 1, 3), (1, 2, 6)]
    assert [r["trained"] for r in rows] == [["semantic"]] * 2 + [["depth"]] * 2
    assert set(rows[0]["metrics"]) == {"semantic"} and set(rows[2]["metrics"]) == {"semantic", "depth"}
    assert 0 <= rows[1]["metrics"]["semantic"]["miou"] <= 1 and rows[3]["metrics"]["depth"]["abs_err"] > 0
    # the last epoch's in-fit validation sees the weights the final evaluation sees
    final = Results.load(curve_run).phases
    for row, phase in ((rows[1], final[0]), (rows[3], final[1])):
        for task, metrics in phase["metrics"].items():
            for k, v in metrics.items():
                assert row["metrics"][task][k] == pytest.approx(v, abs=1e-6), (task, k)


def test_every_n_epochs_leaves_the_final_results_unchanged(curve_run, tmp_path, synth_cache):
    """In-fit validation draws from the global RNG (the val loader's seed); the module restores
    the states, so training, and the results, are those of a run without it."""
    plain = run(load_config([], tiny_overrides(tmp_path, synth_cache) + CURVE_ARGS))
    assert not (plain / "curves.json").exists()
    a, b = Results.load(curve_run).phases, Results.load(plain).phases
    assert [p["phase"] for p in a] == [p["phase"] for p in b] == [0, 1]
    for pa, pb in zip(a, b):
        for task, metrics in pb["metrics"].items():
            for k, v in metrics.items():
                assert pa["metrics"][task][k] == pytest.approx(v, rel=0, abs=1e-6), (pa["phase"], task, k)


def test_a_fit_resumed_mid_phase_keeps_its_curve_and_numbers(curve_run, tmp_path, synth_cache, monkeypatch):
    """last.ckpt at step 3 (the end of epoch 1) is written again when that epoch's validation ends:
    it carries the curve so far and the RNG states training continues with."""
    args = tiny_overrides(tmp_path, synth_cache, **{"train.checkpoint_every_steps": 3}) + CURVE_ARGS + [
        "eval.every_n_epochs=1"]
    real = runner_mod.phase_trainer
    with monkeypatch.context() as m:
        m.setattr(runner_mod, "phase_trainer",
                  lambda cfg, phase, n, root, logger, extra=(): real(cfg, phase, n, root, logger, [*extra, CrashInPhase1(4)]))
        with pytest.raises(RuntimeError, match="simulated crash"):
            run(load_config([], args))
    assert (run_folder_of(load_config([], args)).root / "phase_1" / "last.ckpt").is_file()
    resumed = run(load_config([], args))
    assert Results.load(resumed).phases == Results.load(curve_run).phases
    want, got = (json.loads((d / "curves.json").read_text()) for d in (curve_run, resumed))
    assert [(r["phase"], r["epoch"], r["step"]) for r in got] == [(r["phase"], r["epoch"], r["step"]) for r in want]
    for a, b in zip(got, want):
        for task, metrics in b["metrics"].items():
            assert a["metrics"][task] == pytest.approx(metrics, abs=1e-6), (a["phase"], a["epoch"], task)


def test_reached_and_half_epoch_by_hand():
    assert reached(0.45, 0.5, True) == pytest.approx(0.9)  # higher is better: v(E/2) / v(E)
    assert reached(2.0, 1.8, False) == pytest.approx(0.9)  # lower is better: v(E) / v(E/2)
    assert reached(0.6, 0.5, True) == pytest.approx(1.2)  # half the training was better
    assert reached(None, 0.5, True) is None and reached(0.5, 0.0, True) is None
    assert reached(float("nan"), 1.0, False) is None
    assert half_epoch(list(range(1, 9))) == 4 and half_epoch(list(range(1, 8))) == 3
    assert half_epoch([2, 4, 6]) == 2 and half_epoch([1]) is None and half_epoch([]) is None


def test_convergence_table_by_hand():
    results = Results({"tasks": ["semantic", "depth"], "main_metric": {"semantic": "miou", "depth": "abs_err"},
                       "directions": {"semantic": {"miou": True}, "depth": {"abs_err": False}}})
    rows = [{"phase": 0, "epoch": e, "step": e, "trained": ["semantic"], "metrics": {"semantic": {"miou": m}}}
            for e, m in [(1, 0.2), (2, 0.40), (3, 0.45), (4, 0.50)]]
    rows += [{"phase": 1, "epoch": e, "step": e, "trained": ["depth"],
              "metrics": {"semantic": {"miou": 0.3}, "depth": {"abs_err": a}}} for e, a in [(1, 3.0), (2, 1.0)]]
    sem, dep = convergence(rows, results)
    assert (sem["task"], sem["metric"], sem["half_epoch"], sem["last_epoch"]) == ("semantic", "miou", 2, 4)
    assert sem["reached"] == pytest.approx(0.8) and sem["converged"] is False
    assert (dep["metric"], dep["half_epoch"], dep["last_epoch"], dep["higher_is_better"]) == ("abs_err", 1, 2, False)
    assert dep["reached"] == pytest.approx(1 / 3) and dep["converged"] is False
    md = curves_markdown([sem, dep])
    assert "| 0 | semantic | miou ↑ | 2 | 0.4000 | 4 | 0.5000 | 0.800 | no |" in md


def test_lhl_curves_writes_plot_and_table(curve_run, tmp_path, capsys):
    assert main(["curves", str(curve_run)]) == 0
    out = capsys.readouterr().out
    assert (curve_run / "curves.png").stat().st_size > 1000
    md = (curve_run / "curves.md").read_text()
    assert "reached" in out and "| 0 | semantic | miou ↑ | 1 |" in md and "| 1 | depth | abs_err ↓ | 1 |" in md
    assert main(["curves", str(curve_run), "--out", str(tmp_path / "c.png")]) == 0
    assert (tmp_path / "c.png").is_file() and (tmp_path / "c.md").is_file()
    assert main(["curves", str(tmp_path)]) == 2 and "eval.every_n_epochs" in capsys.readouterr().err


def test_a_rerun_phase_replaces_its_rows(tmp_path):
    path = tmp_path / "curves.json"

    def rows(phase, values):
        return [{"phase": phase, "epoch": e + 1, "step": e + 1, "trained": ["t"], "metrics": {"t": {"m": v}}}
                for e, v in enumerate(values)]

    save_phase_curve(path, 0, rows(0, [1.0, 2.0]))
    save_phase_curve(path, 1, rows(1, [3.0]))
    save_phase_curve(path, 0, rows(0, [5.0, 6.0, 7.0]))  # phase 0 again (resume): replaced, not appended
    save_phase_curve(path, 2, rows(2, [8.0]) + rows(2, [9.0]))  # one epoch twice: the later row stays
    got = json.loads(path.read_text())
    assert [(r["phase"], r["epoch"], r["metrics"]["t"]["m"]) for r in got] == [
        (0, 1, 5.0), (0, 2, 6.0), (0, 3, 7.0), (1, 1, 3.0), (2, 1, 9.0)]
    assert not list(tmp_path.glob("*.tmp"))


def test_every_n_epochs_maps_to_lightning():
    cfg = load_config([], ["eval.every_n_epochs=3"])
    assert val_every(cfg) == 3 and val_every(load_config([], [])) == 10**9
    with pytest.raises(ValueError, match="every_n_epochs"):
        val_every(load_config([], ["eval.every_n_epochs=0"]))


def _by_hand_results():
    return Results({"tasks": ["semantic", "depth"], "main_metric": {"semantic": "miou", "depth": "abs_err"},
                    "directions": {"semantic": {"miou": True}, "depth": {"abs_err": False}}})


def test_convergence_against_a_shorter_run_by_hand():
    """With `short`, value(E/2) is the shorter run's value right after the phase, not epoch E/2's."""
    rows = [{"phase": 0, "epoch": e, "step": e, "trained": ["semantic"], "metrics": {"semantic": {"miou": m}}}
            for e, m in [(1, 0.1), (2, 0.2), (3, 0.3), (4, 0.5)]]
    rows += [{"phase": 1, "epoch": e, "step": e, "trained": ["depth"],
              "metrics": {"semantic": {"miou": 0.3}, "depth": {"abs_err": a}}} for e, a in [(2, 3.0), (4, 0.9)]]
    short = Results(_by_hand_results().meta, [
        {"phase": 0, "trained": ["semantic"], "metrics": {"semantic": {"miou": 0.46}}},
        {"phase": 1, "trained": ["depth"], "metrics": {"semantic": {"miou": 0.2}, "depth": {"abs_err": 1.0}}}])
    sem, dep = convergence(rows, _by_hand_results(), short, {0: 2, 1: 2})
    assert (sem["half_epoch"], sem["half"], sem["last"]) == (2, 0.46, 0.5)  # not epoch 2's 0.2
    assert sem["reached"] == pytest.approx(0.92) and sem["converged"] is True
    assert (dep["half"], dep["last"]) == (1.0, 0.9) and dep["reached"] == pytest.approx(0.9)


def _fake_run(folder, epochs, schedule="constant", lr=1e-3, seed=0, scale=1.0):
    """A run folder by hand: miou = 0.1 * scale * epoch after every epoch of its one phase."""
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(
        f"run: {{name: {folder.name}, out_dir: x, seed: {seed}}}\n"
        f"train: {{epochs: {epochs}, lr: {lr}, lr_schedule: {schedule}}}\n"
        f"eval: {{every_n_epochs: {2 if epochs > 1 else 'null'}}}\n")
    rows = [{"phase": 0, "epoch": e, "step": e, "trained": ["semantic"], "metrics": {"semantic": {"miou": 0.1 * scale * e}}}
            for e in range(1, epochs + 1)]
    (folder / "curves.json").write_text(json.dumps(rows))
    Results(dict(_by_hand_results().meta, seed=seed), [{"phase": 0, "trained": ["semantic"],
                                                        "metrics": {"semantic": {"miou": 0.1 * scale * epochs}}}]).save(folder)
    return folder


def test_a_short_run_must_be_the_same_run_with_fewer_epochs(tmp_path):
    long = _fake_run(tmp_path / "long", 4, "cosine")
    phases = {0: ["semantic"]}
    assert check_short(long, _fake_run(tmp_path / "short", 2, "cosine"), phases) == {0: 2}  # run.*, eval.* may differ
    with pytest.raises(ValueError, match=r"other/config.yaml.*train.lr: 0.002 \(long run 0.001\)"):
        check_short(long, _fake_run(tmp_path / "other", 2, "cosine", lr=2e-3), phases)
    with pytest.raises(ValueError, match=r"run.seed: 1 \(long run 0\)"):
        check_short(long, _fake_run(tmp_path / "seed1", 2, "cosine", seed=1), phases)
    with pytest.raises(ValueError, match=r"phase 0 \(semantic\) trains 4 epochs.*needs fewer epochs in every phase"):
        check_short(long, _fake_run(tmp_path / "same", 4, "cosine"), phases)


def test_lhl_curves_on_an_annealed_schedule_needs_the_shorter_run(tmp_path, capsys):
    """Epoch E/2 of a cosine run has not annealed: no verdict from it, a clear error instead."""
    long, short = _fake_run(tmp_path / "long", 4, "cosine"), _fake_run(tmp_path / "short", 2, "cosine")
    assert main(["curves", str(long)]) == 2
    err = capsys.readouterr().err
    assert "long/config.yaml: train.lr_schedule=cosine" in err and "--short" in err
    assert main(["curves", str(long), "--short", str(short)]) == 0
    md = (long / "curves.md").read_text()
    assert "| 0 | semantic | miou ↑ | 2 | 0.2000 | 4 | 0.4000 | 0.500 | no |" in md and "run of 2 epochs" in md


def test_a_shorter_run_agrees_with_the_long_runs_half_epoch_under_a_constant_rate(curve_run, tmp_path, synth_cache):
    """Constant learning rate: the first phase of a 1-epoch run is the 2-epoch run's first epoch,
    so --short reproduces the mid-run value there (later phases start from other weights)."""
    args = [a for a in CURVE_ARGS if not a.startswith("train.epochs=")] + ["train.epochs=1"]
    short = run(load_config([], tiny_overrides(tmp_path, synth_cache) + args))
    rows, results = json.loads((curve_run / "curves.json").read_text()), Results.load(curve_run)
    assert check_short(curve_run, short, phase_tasks(rows)) == {0: 1, 1: 1}
    mid, against = convergence(rows, results), convergence(rows, results, Results.load(short), {0: 1, 1: 1})
    assert against[0]["half"] == pytest.approx(mid[0]["half"], abs=1e-6)
    assert against[0]["reached"] == pytest.approx(mid[0]["reached"], abs=1e-6)


def test_convergence_over_seeds_by_hand():
    """Mean, std and the 95 % t interval of the mean of `reached` over two seeds (t(0.975, 1) = 12.706)."""
    entry = dict(phase=0, task="semantic", metric="miou", higher_is_better=True)
    got, = convergence_over_seeds([[dict(entry, reached=0.8)], [dict(entry, reached=0.9)]])
    assert got["reached"] == [0.8, 0.9] and got["n"] == 2
    assert got["mean"] == pytest.approx(0.85) and got["std"] == pytest.approx(0.0707107, rel=1e-5)
    assert got["ci95"] == pytest.approx([0.85 - 12.7062 * 0.05, 0.85 + 12.7062 * 0.05], rel=1e-4)
    assert got["converged"] is False
    one, = convergence_over_seeds([[dict(entry, reached=0.95)], [dict(entry, reached=None)]])
    assert one["n"] == 1 and one["mean"] == pytest.approx(0.95) and one["ci95"] is None and one["converged"] is True


def test_lhl_curves_over_seeds(tmp_path, capsys):
    """Several long runs, each paired with its seed's short run: every run's own table, then the
    table over seeds (mean and interval), written with --summary; mismatched inputs are refused."""
    longs = [_fake_run(tmp_path / f"e4/seed{s}", 4, "cosine", seed=s, scale=k) for s, k in ((0, 1.0), (1, 2.0))]
    shorts = [_fake_run(tmp_path / f"e2/seed{s}", 2, "cosine", seed=s, scale=k) for s, k in ((0, 1.8), (1, 3.0))]
    out = tmp_path / "conv.md"
    assert main(["curves", *map(str, longs), "--short", *map(str, shorts), "--summary", str(out)]) == 0
    # seed 0: 0.36 / 0.4 = 0.9 (0.1 x 1.8 x 2 epochs against 0.1 x 1 x 4); seed 1: 0.6 / 0.8 = 0.75
    assert "| 0 | semantic | miou ↑ | 0.900 / 0.750 | 0.825 ± 0.106 | [-0.128, 1.778] | no |" in out.read_text()
    assert json.loads(out.with_suffix(".json").read_text())["seeds"] == [0, 1]
    assert (longs[1] / "curves.md").is_file() and "Convergence over seeds" in capsys.readouterr().out
    assert main(["curves", *map(str, longs), "--short", str(shorts[0])]) == 2
    assert "2 long runs" in capsys.readouterr().err
    assert main(["curves", str(longs[0]), str(shorts[1]), "--short", *map(str, shorts)]) == 2
    assert "one run on several seeds" in capsys.readouterr().err  # a 2-epoch run among the long ones
    assert main(["curves", str(longs[0]), str(longs[0]), "--short", str(shorts[0]), str(shorts[0])]) == 2
    assert "repeat a seed" in capsys.readouterr().err
    assert main(["curves", str(longs[1]), "--short", str(shorts[0])]) == 2  # seeds paired wrongly
    assert "run.seed: 0 (long run 1)" in capsys.readouterr().err


def _epochs_run(folder, train: str):
    """A run folder's config alone, with the given train section (flow style)."""
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(f"run: {{name: {folder.name}, out_dir: x, seed: 0}}\ntrain: {train}\n")
    return folder


def test_a_short_run_is_checked_phase_by_phase_when_phases_train_their_own_epochs(tmp_path):
    """train.task_epochs and train.epoch_scale set each phase's epochs (make curves doubles them all
    with epoch_scale=2): the short run's epochs come per phase, and each must be fewer than the long run's."""
    preset = "{epochs: 10, task_epochs: {depth: 8, normal: 14}, lr_schedule: cosine}"
    long = _epochs_run(tmp_path / "long", "{epochs: 10, task_epochs: {depth: 8, normal: 14}, epoch_scale: 2, lr_schedule: cosine}")
    phases = {0: ["semantic"], 1: ["depth"], 2: ["normal"]}
    assert check_short(long, _epochs_run(tmp_path / "short", preset), phases) == {0: 10, 1: 8, 2: 14}
    longer_depth = "{epochs: 10, task_epochs: {depth: 16, normal: 14}, lr_schedule: cosine}"
    with pytest.raises(ValueError, match=r"phase 1 \(depth\) trains 16 epochs.*long run's 16 there"):
        check_short(long, _epochs_run(tmp_path / "depth16", longer_depth), phases)
    with pytest.raises(ValueError, match=r"train.lr_schedule: 'poly'"):
        check_short(long, _epochs_run(tmp_path / "poly", preset.replace("cosine", "poly")), phases)


class _StartWeights(pl.Callback):
    """The backbone's weights when each phase's fit starts."""

    def __init__(self):
        self.seen = {}

    def on_fit_start(self, trainer, pl_module):
        name = trainer.default_root_dir.rsplit("/", 1)[-1]
        self.seen[name] = {k: v.detach().clone() for k, v in pl_module.network.backbone.state_dict().items()}


def test_an_isolated_check_starts_each_phase_from_the_short_runs_network(tmp_path, synth_cache, monkeypatch):
    """make curves ISOLATED=1: the doubled run's phase 1 starts from the short run's network after
    phase 0 (not its own, which trained twice as long), and lhl curves accepts the pair."""
    args = tiny_overrides(tmp_path, synth_cache, **{
        "method": "finetune", "sequence.tasks": "[semantic,depth]", "model.backbone": "resnet10t",
        "train.max_steps": -1, "eval.gallery_samples": 0, "logger": "none"})
    short = run(load_config([], args + ["run.name=x1"]))
    probe = _StartWeights()
    real = runner_mod.phase_trainer
    monkeypatch.setattr(runner_mod, "phase_trainer", lambda cfg, phase, n, root, logger, extra=(): real(
        cfg, phase, n, root, logger, [*extra, probe]))
    long = run(load_config([], args + ["run.name=x2iso", "train.epoch_scale=2", "eval.every_n_epochs=1",
                                       f"run.phases_start_from={short}"]))
    short0, long0 = (torch.load(d / "phase_0" / "phase.ckpt", map_location="cpu", weights_only=False)["network"]
                     for d in (short, long))
    for key, value in probe.seen["phase_1"].items():
        assert torch.equal(value, short0["backbone." + key]), key
    assert any(not torch.equal(short0[k], v) for k, v in long0.items())  # its own phase 0 trained longer
    assert main(["curves", str(long), "--short", str(short)]) == 0
    with pytest.raises(FileNotFoundError, match=r"run.phases_start_from=.*nowhere: no finished lhl run there"):
        run(load_config([], args + ["run.name=bad", f"run.phases_start_from={tmp_path / 'nowhere'}"]))
