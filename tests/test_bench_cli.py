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
