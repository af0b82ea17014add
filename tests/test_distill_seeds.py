"""`lhl distill --seeds`: one folder per seed, and the summary's statistics against hand-computed values."""
import json
import math

import pytest
from omegaconf import OmegaConf

from lhl.core.io import atomic_write_json
from lhl.cli.distill import parse_args
from lhl.distill.config import load_config
from lhl.distill.methods import requested_kinds
from lhl.distill.seeds import parse_seeds, run_seeds, seed_config, summarise, summary_markdown


def _row(model, miou, pixacc=0.5):
    return {"model": model, "miou": miou, "pixacc": pixacc}


def _results(alone, hakd, kd=None):
    out = {"teacher": dict(_row("t", 0.30), train_miou=0.9, train_pixacc=0.95), "none": _row("s", alone), "heteroakd": _row("s", hakd)}
    if kd is not None:
        out["kd"] = _row("s", kd)
    return out


def test_summary_paired_intervals_match_hand_computed_values():
    # gains of HeteroAKD over alone: +1, +2, +3 points -> mean 2, sd 1, t(0.975, 2) = 4.302653
    per_seed = {0: _results(0.20, 0.21, 0.20), 1: _results(0.22, 0.24, 0.23), 2: _results(0.18, 0.21)}
    s = summarise(per_seed)
    h = s["rows"]["heteroakd"]
    assert h["miou"] == pytest.approx([21.0, 24.0, 21.0])
    assert h["miou_stats"]["mean"] == pytest.approx(22.0) and h["miou_stats"]["std"] == pytest.approx(math.sqrt(3))
    half = 4.302653 * 1 / math.sqrt(3)
    assert h["vs_alone"]["mean"] == pytest.approx(2.0)
    assert h["vs_alone"]["ci95"] == pytest.approx([2 - half, 2 + half], rel=1e-5)
    assert "heteroakd_minus" not in h and "vs_alone" not in s["rows"]["none"]
    # HeteroAKD minus the student alone is the same test, seen from the alone row
    assert s["rows"]["none"]["heteroakd_minus"]["mean"] == pytest.approx(2.0)
    # logit KD exists for seeds 0 and 1 only: its paired columns use those two seeds
    kd = s["rows"]["kd"]
    assert kd["seeds"] == [0, 1] and kd["vs_alone"]["seeds"] == [0, 1]
    assert kd["vs_alone"]["mean"] == pytest.approx(0.5)  # 0 and +1 points
    assert kd["heteroakd_minus"]["mean"] == pytest.approx(1.0)  # +1 and +1: no spread, no interval
    assert kd["heteroakd_minus"]["ci95"] is None
    md = summary_markdown(s, "t")
    assert "| HeteroAKD | s | 22.00 ± 1.73 | 50.00 ± 0.00 | +2.00 [-0.48, +4.48] |  |" in md
    assert "| logit KD (seeds 0, 1) |" in md and "| +1.00 |" in md
    assert "| teacher | t | 30.00 ± 0.00 |" in md
    assert "The teacher on the training images (those the students are distilled on): mIoU 90.00 ± 0.00, " \
        "pixel accuracy 95.00 ± 0.00." in md


def test_an_interval_that_excludes_zero_is_starred():
    per_seed = {k: _results(0.20, 0.20 + d) for k, d in enumerate((0.010, 0.011, 0.012, 0.013))}
    md = summary_markdown(summarise(per_seed), "t")
    # diffs 1.0, 1.1, 1.2, 1.3: sd 0.1291, t(0.975, 3) = 3.1824 -> half width 0.2054
    assert "+1.15 [+0.94, +1.36] *" in md


def test_run_seeds_gives_each_seed_its_folder_and_summarises(tmp_path):
    cfg = load_config([], [f"run.out_dir={tmp_path}"])
    seen = []

    def fake_run(c):
        seen.append((c.run.seed, c.run.name))
        atomic_write_json(tmp_path / c.run.name / "results.json", _results(0.2, 0.2 + 0.01 * (c.run.seed + 1)))
        return tmp_path / c.run.name

    md = run_seeds(cfg, [3, 4], fake_run)
    base = "synthetic_deeplabv3_resnet18_to_segformer_pvt_v2_b0"
    assert seen == [(3, f"{base}_seed3"), (4, f"{base}_seed4")]
    assert md == tmp_path / f"{base}_seeds.md"
    summary = json.loads((tmp_path / f"{base}_seeds.json").read_text())
    assert summary["seeds"] == [3, 4]
    assert summary["rows"]["heteroakd"]["vs_alone"]["mean"] == pytest.approx(4.5)


def test_seed_options_are_checked():
    assert parse_seeds("0 1, 2") == [0, 1, 2] and parse_seeds(None) is None
    assert parse_args(["--seeds", "0 1 2", "train.lr=0.1"]).seeds == "0 1 2"
    with pytest.raises(ValueError, match="seeds are integers"):
        parse_seeds("0 a")
    cfg = load_config([], ["run.teacher_ckpt=/x/teacher.ckpt"])
    with pytest.raises(ValueError, match=r"one teacher would serve every seed; put \{seed\} in the path"):
        seed_config(cfg, "b", 0)
    cfg = load_config([], ["run.teacher_ckpt=/x/b_seed{seed}/teacher.ckpt"])
    assert seed_config(cfg, "c", 3).run.teacher_ckpt == "/x/b_seed3/teacher.ckpt"
    assert requested_kinds("heteroakd, none") == ("none", "heteroakd") and len(requested_kinds("all")) == 7
    with pytest.raises(ValueError, match="run.kd='nope'"):
        requested_kinds("none,nope")
    with pytest.raises(ValueError, match="distinct seeds"):
        run_seeds(OmegaConf.create(load_config([], [])), [1, 1], lambda c: None)


def test_study_compares_one_row_across_sweeps(tmp_path, capsys):
    from lhl.cli import main as lhl_main
    from lhl.distill.study import study

    for k, (a, h_ref, h_new) in enumerate([(0.20, 0.21, 0.22), (0.22, 0.22, 0.24), (0.18, 0.20, 0.23)]):
        atomic_write_json(tmp_path / f"ref_seed{k}" / "results.json", _results(a, h_ref))
        atomic_write_json(tmp_path / f"new_seed{k}" / "results.json", _results(a, h_new))
    atomic_write_json(tmp_path / "new_seedx" / "results.json", _results(0.5, 0.5))  # not a seed folder: ignored
    obj = study(tmp_path, ["ref", "new"], "heteroakd")
    new = obj["sweeps"]["new"]
    assert new["seeds"] == [0, 1, 2] and new["miou"]["mean"] == pytest.approx(23.0)
    assert new["vs_alone"]["mean"] == pytest.approx(3.0)  # +2, +2, +5: sd sqrt(3), se 1 -> half width 4.3027
    assert new["vs_ref"]["mean"] == pytest.approx(2.0)  # +1, +2, +3: sd 1 -> half width 4.3027 / sqrt(3)
    assert new["vs_ref"]["ci95"] == pytest.approx([2 - 4.302653 / math.sqrt(3), 2 + 4.302653 / math.sqrt(3)], rel=1e-5)
    assert "vs_ref" not in obj["sweeps"]["ref"]
    assert study(tmp_path, ["ref", "new"], "heteroakd", seeds=[0, 1])["sweeps"]["new"]["vs_ref"]["n"] == 2
    out = tmp_path / "study.md"
    assert lhl_main(["distill-study", "--out", str(tmp_path), "ref", "new", "--write", str(out)]) == 0
    assert "| new | 0, 1, 2 | 23.00 ± 1.00 | 20.00 ± 2.00 | +3.00 [-1.30, +7.30] | +2.00 [-0.48, +4.48] |" in out.read_text()
    assert json.loads(out.with_suffix(".json").read_text())["ref"] == "ref"
    with pytest.raises(FileNotFoundError, match="no nope_seed<k>/results.json"):
        study(tmp_path, ["nope"], "heteroakd")
