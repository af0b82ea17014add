"""DER, DER++, iCaRL, SGP and SPG end to end on CPU: every task type (a tiny Taskonomy building
with a scalar edge map), the phase checkpoint's method state, and resume (seconds per run)."""
from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image

from conftest import tiny_overrides
from lhl.config import load_config
from lhl.runs.folder import RunFolder
from lhl.engine.runner import run
from lhl.runs.results import Results

NEW = ["der", "derpp", "icarl", "sgp", "spg"]
#: a loss term each method logs once it has something to replay, distil or protect
TERM = {"der": "loss/der/semantic", "derpp": "loss/derpp/replay", "icarl": "loss/icarl/replay",
        "sgp": "loss/edge", "spg": "loss/edge"}
FAST = {"model.backbone": "test_resnet", "model.output_stride": 32, "eval.gallery_samples": 0,
        "train.max_steps": 2}


def write_taskonomy(root, n=16, size=32):
    rng = np.random.default_rng(0)
    for k in range(n):
        name = f"point_{k}_view_0_domain_{{}}.png"
        folder = root / "a"

        def save(domain, arr):
            (folder / domain).mkdir(parents=True, exist_ok=True)
            Image.fromarray(arr).save(folder / domain / name.format(domain))

        save("rgb", rng.integers(0, 255, (size, size, 3), dtype=np.uint8))
        save("depth_zbuffer", rng.integers(256, 4096, (size, size), dtype=np.uint16))
        save("normal", rng.integers(0, 255, (size, size, 3), dtype=np.uint8))
        save("segment_semantic", rng.integers(0, 5, (size, size), dtype=np.uint8))
        save("edge_texture", rng.integers(0, 65535, (size, size), dtype=np.uint16))


def taskonomy_run(tmp_path, cache, method, **extra):
    root = tmp_path / "taskonomy"
    if not root.exists():
        write_taskonomy(root)
    over = {**FAST, "seq": "taskonomy_s1", "data.root": str(root),
            "data.options": "{buildings: {train: [a], val: [a]}, size: [32, 32], split_file: null}",
            "sequence.tasks": "[semantic,depth,normal,edge]", "data.batch_size": 4,
            "method": method, **extra}
    return run(load_config([], tiny_overrides(tmp_path, cache, **over)))


@pytest.mark.parametrize("method", NEW)
def test_new_baselines_run_every_task_type(tmp_path, synth_cache, method):
    run_dir = taskonomy_run(tmp_path, synth_cache, method)
    res = Results.load(run_dir)
    assert [p["phase"] for p in res.phases] == [0, 1, 2, 3]
    assert set(res.phases[3]["metrics"]) == {"semantic", "depth", "normal", "edge"}
    log = run_dir / "logs" / "phase_3" / "metrics.csv"
    values = [float(r[TERM[method]]) for r in csv.DictReader(log.open()) if r.get(TERM[method])]
    assert values and all(np.isfinite(values)), TERM[method]
    state = RunFolder(run_dir).load_phase(3)["method_state"]
    if method in ("der", "derpp"):
        extras = state["buffer"]["extras"]
        assert set(extras) == {"der/semantic", "der/depth", "der/normal", "der/edge"}
        assert extras["der/semantic"].shape[1:] == (17, 32, 32)
    elif method == "icarl":
        sizes = {t: len(s["index"]) for t, s in state["sets"].items()}
        assert sizes == {t: 4 for t in ("semantic", "depth", "normal", "edge")}  # slices of 4 < ⌊50/4⌋
    elif method == "sgp":
        assert state["phases_done"] == 4 and state["bases"] and state["report"]["stored_bytes"] > 0
    else:
        masks = state["accumulated"].values()
        assert masks and all(0 <= float(a.min()) and float(a.max()) <= 1 for a in masks)


def synthetic_run(tmp_path, cache, method, **extra):
    over = {**FAST, "sequence.tasks": "[depth,semantic]", "method": method, **extra}
    return run(load_config([], tiny_overrides(tmp_path, cache, **over)))


@pytest.mark.slow
@pytest.mark.parametrize("method", NEW)
def test_new_baselines_resume_a_killed_phase_to_the_same_numbers(tmp_path, synth_cache, method):
    extra = {"method.exemplars": 6} if method == "icarl" else {}
    full = synthetic_run(tmp_path / "a", synth_cache, method, **extra)
    part = synthetic_run(tmp_path / "b", synth_cache, method, **extra)
    res = Results.load(part)
    res.phases = res.phases[:1]
    res.save(part)
    (part / "phase_1" / "phase.ckpt").unlink()
    resumed = synthetic_run(tmp_path / "b", synth_cache, method, **extra)
    a, b = Results.load(full).phases[1]["metrics"], Results.load(resumed).phases[1]["metrics"]
    for t in a:
        for k in a[t]:
            assert a[t][k] == pytest.approx(b[t][k], rel=1e-4, abs=1e-5), (t, k)
    if method == "icarl":  # ⌊6/1⌋ then ⌊6/2⌋ per task; an old set keeps its herding prefix
        s0 = RunFolder(full).load_phase(0)["method_state"]["sets"]
        s1 = RunFolder(full).load_phase(1)["method_state"]["sets"]
        assert len(s0["depth"]["index"]) == 6 and [len(s1[t]["index"]) for t in ("depth", "semantic")] == [3, 3]
        assert s1["depth"]["index"].tolist() == s0["depth"]["index"][:3].tolist()
        assert set(s1["depth"]["pseudo"]) == {"semantic"} and set(s1["semantic"]["pseudo"]) == {"depth"}
