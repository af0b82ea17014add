"""`lhl bench` runs (tiny setting) and writes its JSON: per-method step times and flat teacher passes."""
from __future__ import annotations

import json

from lhl.cli import main


def test_bench_writes_json_with_one_teacher_pass(tmp_path):
    out = tmp_path / "bench.json"
    code = main(["bench", "--device", "cpu", "--batch", "2", "--height", "32", "--width", "32", "--head-width", "8",
                 "--steps", "1", "--warmup", "1", "--old-heads", "1", "3", "--out", str(out)])
    assert code == 0
    res = json.loads(out.read_text())
    assert set(res["methods"]) == {"finetune", "lwf", "had"} and res["had_over_lwf"] > 0
    assert res["methods"]["finetune"]["teacher_backbone_passes_per_step"] == 0
    assert res["methods"]["had"]["teacher_backbone_passes_per_step"] == 1
    assert [res["old_heads"][k]["teacher_backbone_passes_per_step"] for k in ("1", "3")] == [1, 1]


def test_bench_e2e_times_both_ways_of_running_on_the_same_data(tmp_path, synth_cache, monkeypatch):
    from conftest import tiny_overrides

    monkeypatch.chdir(tmp_path)
    out = tmp_path / "e2e.json"
    extra = [o for o in tiny_overrides(tmp_path, synth_cache) if not o.startswith(("seq=", "run.out_dir="))]
    code = main(["bench-e2e", "--seq", "synthetic_s1", "--method", "lwf", "--data", "preset", "--out", str(out),
                 *extra, "sequence.tasks=[semantic,depth]", "train.max_steps=1"])
    assert code == 0
    res = json.loads(out.read_text())
    assert set(res["runs"]) == {"release", "lhl"} and res["speedup"] > 0
    assert "train.teacher_pass=per_task" in res["runs"]["release"]["overrides"]
    for r in res["runs"].values():
        assert r["seconds"] > 0 and set(r["final"]) == {"semantic", "depth"}
    assert (tmp_path / "bench" / "e2e_runs_cpu" / "release" / "run" / "results.json").is_file()
