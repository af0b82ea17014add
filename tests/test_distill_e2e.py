"""Segmenters of both families, the distill config, and a tiny end-to-end `lhl distill` on CPU."""
import json
import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

import lhl.models.backbone as backbone
from lhl.distill.checkpoint import load_teacher, model_spec, save_model
from lhl.cli.distill import cli, config_from_args, parse_args
from lhl.distill.config import devices, load_config
from lhl.distill.rows import config_digest, earlier_rows
from lhl.distill.segmenters import build_segmenter

REPO = Path(__file__).resolve().parents[1]

TINY_PVT = {"embed_dims": [8, 16, 32, 64], "depths": [1, 1, 1, 1], "num_heads": [1, 1, 2, 2]}
TINY_SWIN = {"embed_dim": 8, "depths": [1, 1, 1, 1], "num_heads": [1, 1, 2, 2], "window_size": 4}
TINY_VIT = {"patch_size": 4, "embed_dim": 16, "depth": 2, "num_heads": 2}


@pytest.mark.parametrize("name,kwargs,stages", [
    ("deeplabv3_mobilenetv2_035", {}, 5),
    ("segformer_pvt_v2_b0", {"encoder_kwargs": TINY_PVT}, 4),
    ("upernet_swin_tiny_patch4_window7_224", {"encoder_kwargs": TINY_SWIN}, 4),
    ("fpn_vit_tiny_patch16_224", {"encoder_kwargs": TINY_VIT, "out_indices": [0, 1]}, 2),
])
def test_segmenters_give_logits_at_input_size_and_nchw_stages(name, kwargs, stages):
    size = (32, 48)
    model = build_segmenter(name, 5, width=8, img_size=size, **kwargs)
    out = model(torch.rand(2, 3, *size))
    assert out["logits"].shape == (2, 5, *size)
    assert len(out["features"]) == stages
    assert [f.shape[1] for f in out["features"]] == model.feature_channels
    assert out["decoder"].shape[1] == 8
    out["logits"].mean().backward()


def test_segmenter_name_errors_list_the_decoders():
    with pytest.raises(ValueError, match="deeplabv3, segformer, upernet, fpn"):
        build_segmenter("pspnet_resnet18", 3)
    with pytest.raises(ValueError, match=r"student\.name='segformer_nonet'.*timm has no encoder 'nonet'"):
        build_segmenter("segformer_nonet", 3, key="student")


def test_offline_pretrained_error_names_the_section(monkeypatch):
    def offline(*args, **kwargs):
        try:
            raise OSError("no network")
        except OSError as err:
            raise RuntimeError("model.pretrained=true: could not fetch") from err

    monkeypatch.setattr(backbone, "create_timm_features", offline)
    with pytest.raises(RuntimeError, match=r"teacher\.pretrained=true.*no network.*teacher\.pretrained=false"):
        build_segmenter("deeplabv3_resnet18", 3, pretrained=True, key="teacher")


def test_config_unknown_keys_are_errors_naming_the_key():
    cfg = load_config([], ["train.lr=0.5", "teacher.encoder_kwargs.depth=2"])
    assert cfg.train.lr == 0.5 and cfg.teacher.encoder_kwargs.depth == 2
    with pytest.raises(ValueError, match="train.lrr"):
        load_config([], ["train.lrr=0.5"])
    with pytest.raises(ValueError, match="kd.heteroakd.weight_axes"):
        load_config([], ["kd.heteroakd.weight_axes=pixel"])


def test_cli_flags_and_data_preset():
    cfg = config_from_args(parse_args(["--data", "nyuv2", "--kd", "cwd", "--student", "fpn_vit_small_patch16_224",
                                       "--config", "swin_to_cnn", "kd.cwd.tau=2"]))
    assert (cfg.data.name, cfg.run.kd, cfg.kd.cwd.tau) == ("nyuv2", "cwd", 2.0)
    assert cfg.teacher.width == 256 and cfg.teacher.name == "upernet_swin_tiny_patch4_window7_224"
    assert cfg.student.name == "fpn_vit_small_patch16_224"  # flags win over presets


def _make_distill_argv(*make_args):
    """The `lhl distill` arguments `make -n distill ...` would run (outside any calling make: a
    `make test ARGS=...` would hand its variables down through MAKEFLAGS)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "ARGS", "KD", "TEACHER",
                        "STUDENT", "DATA", "TEACHER_CKPT", "SEEDS", "SEED", "RUNS_DIR")}
    out = subprocess.run(["make", "-n", "-C", str(REPO), "distill", *make_args], capture_output=True,
                         text=True, check=True, env=env).stdout
    line = [ln for ln in out.splitlines() if "lhl distill" in ln][-1]
    words = shlex.split(line)
    return words[words.index("distill") + 1:]


@pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")
def test_make_distill_passes_only_the_variables_set():
    out = ["--out", "runs/kd"]  # RUNS_DIR/kd: every target writes under RUNS_DIR
    assert _make_distill_argv() == out
    assert _make_distill_argv("TEACHER=x", "TEACHER_CKPT=/t.ckpt") == ["--teacher", "x", "--teacher-ckpt", "/t.ckpt", *out]
    assert _make_distill_argv("SEEDS=0 1 2", "KD=none,kd") == ["--kd", "none,kd", "--seeds", "0 1 2", *out]
    assert _make_distill_argv("RUNS_DIR=/r")[-2:] == ["--out", "/r/kd"]
    cfg = config_from_args(parse_args(_make_distill_argv("ARGS=--config swin_to_cnn")))
    assert (cfg.teacher.name, cfg.student.name) == ("upernet_swin_tiny_patch4_window7_224", "deeplabv3_mobilenetv2_100")
    assert (cfg.data.name, cfg.run.kd) == ("synthetic", "all")  # default.yaml's


def test_missing_teacher_checkpoint_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="run.teacher_ckpt"):
        cli(["--out", str(tmp_path), "--teacher-ckpt", str(tmp_path / "nope.ckpt")])


def test_tiny_distillation_end_to_end(tmp_path):
    common = [
        "--out", str(tmp_path / "runs"), "--name", "tiny", "--data", "synthetic",
        "--teacher", "deeplabv3_mobilenetv2_035", "--student", "segformer_pvt_v2_b0", "--config", "tiny",
        f"data.synthetic.cache={tmp_path / 'cache'}",
    ]
    assert cli(["--kd", "all"] + common) == 0
    run = tmp_path / "runs" / "tiny"
    results = json.loads((run / "results.json").read_text())
    assert set(results) == {"teacher", "none", "kd", "cwd", "skd", "cirkd", "afdcd", "heteroakd"}
    for r in results.values():
        assert 0 <= r["miou"] <= 1 and 0 <= r["pixacc"] <= 1
    table = (run / "results.md").read_text()
    for label in ("teacher", "student alone", "logit KD", "CWD", "SKD", "CIRKD", "Af-DCD", "HeteroAKD"):
        assert f"| {label} |" in table
    assert (run / "teacher.ckpt").exists() and (run / "config.yaml").exists()
    header = (run / "heteroakd" / "metrics.csv").read_text().splitlines()[0]
    assert "train/akd" in header and "train/teacher_share" in header
    for kind, term in (("skd", "train/pa"), ("cirkd", "train/region"), ("afdcd", "train/ctr")):
        assert term in (run / kind / "metrics.csv").read_text().splitlines()[0]

    # a second run reuses the saved teacher (same val numbers, no teacher training)
    again = tmp_path / "again"
    assert cli(["--kd", "heteroakd", "--teacher-ckpt", str(run / "teacher.ckpt"), "--out", str(again)]
               + common[2:]) == 0
    second = json.loads((again / "tiny" / "results.json").read_text())
    assert set(second) == {"teacher", "heteroakd"}
    assert second["teacher"]["miou"] == pytest.approx(results["teacher"]["miou"])
    assert second["teacher"]["pixacc"] == pytest.approx(results["teacher"]["pixacc"])
    assert not (again / "tiny" / "teacher.ckpt").exists()


def _tiny(tmp_path):
    return [
        "--out", str(tmp_path / "runs"), "--name", "tiny", "--data", "synthetic",
        "--teacher", "deeplabv3_mobilenetv2_035", "--student", "segformer_pvt_v2_b0", "--config", "tiny",
        f"data.synthetic.cache={tmp_path / 'cache'}",
    ]


def test_rows_of_earlier_runs_are_kept_and_stale_ones_dropped(tmp_path, capsys):
    common = _tiny(tmp_path)
    run = tmp_path / "runs" / "tiny"
    assert cli(["--kd", "none"] + common) == 0
    first = json.loads((run / "results.json").read_text())
    table = (run / "results.md").read_text()
    assert 0 <= first["teacher"]["train_miou"] <= 1 and 0 <= first["teacher"]["train_pixacc"] <= 1
    assert "The teacher on the training images (those the students are distilled on): mIoU" in table
    assert "Missing rows: logit KD, CWD, SKD, CIRKD, Af-DCD, HeteroAKD." in table
    assert f"lhl distill --config {run / 'config.yaml'} --kd kd" in table

    # the command the table prints: same config, same teacher, another method
    assert cli(["--config", str(run / "config.yaml"), "--kd", "kd"]) == 0
    second = json.loads((run / "results.json").read_text())
    assert set(second) == {"teacher", "none", "kd"}
    assert second["none"] == first["none"]
    assert second["teacher"]["teacher_id"] == first["teacher"]["teacher_id"] == second["kd"]["teacher_id"]
    table = (run / "results.md").read_text()
    assert "| student alone |" in table and "| logit KD |" in table and "Missing rows: CWD, SKD, CIRKD, Af-DCD, HeteroAKD." in table

    # the same again: the rows are kept, not trained again (an interrupted run resumes at its first missing row)
    capsys.readouterr()
    assert cli(["--config", str(run / "config.yaml"), "--kd", "kd"]) == 0
    assert "keeping the earlier rows kd (same config and teacher)" in capsys.readouterr().out
    assert json.loads((run / "results.json").read_text())["kd"] == second["kd"]

    # another learning rate: the earlier student rows are stale
    capsys.readouterr()
    assert cli(["--kd", "cwd", "train.lr=0.01"] + common) == 0
    out = capsys.readouterr().out
    assert "dropping the earlier 'student alone' row" in out and "dropping the earlier 'logit KD' row" in out
    assert set(json.loads((run / "results.json").read_text())) == {"teacher", "cwd"}
    assert "Missing rows: student alone, logit KD, SKD, CIRKD, Af-DCD, HeteroAKD." in (run / "results.md").read_text()


def test_earlier_rows_need_the_same_teacher(tmp_path, capsys):
    cfg = load_config()
    rows = {k: {"miou": 0.5, "config_hash": config_digest(cfg, k), "teacher_id": "aaa"} for k in ("none", "kd")}
    rows["cwd"] = {"miou": 0.5, "config_hash": "old", "teacher_id": "bbb"}
    (tmp_path / "results.json").write_text(json.dumps({"teacher": {"miou": 0.9}, **rows}))
    assert set(earlier_rows(tmp_path, cfg, "aaa")) == {"none", "kd"}
    kept = earlier_rows(tmp_path, cfg, "bbb")  # the student alone does not depend on the teacher
    assert set(kept) == {"none"}
    assert "dropping the earlier 'logit KD' row: it was made with another teacher" in capsys.readouterr().out


def test_bad_student_settings_fail_before_the_teacher_trains(tmp_path):
    common = _tiny(tmp_path)
    with pytest.raises(ValueError, match=r"kd\.heteroakd\.student_stages=\[-1, 4\].*ints in \[-4, 3\] or \"decoder\""):
        cli(["--kd", "all", "kd.heteroakd.student_stages=[-1,4]"] + common)
    with pytest.raises(ValueError, match=r"kd\.heteroakd\.teacher_stages=.*'deeplabv3_mobilenetv2_035', which has 5"):
        cli(["--kd", "heteroakd", "kd.heteroakd.teacher_stages=[-6,-1]"] + common)
    with pytest.raises(ValueError, match=r"student\.name='segformer_nonet': timm has no encoder"):
        cli(common + ["--student", "segformer_nonet"])
    with pytest.raises(ValueError, match=r"teacher\.name='pspnet_resnet18'.*deeplabv3, segformer, upernet, fpn"):
        cli(common + ["--teacher", "pspnet_resnet18"])
    with pytest.raises(ValueError, match="kd.heteroakd.weight_axis='rows'"):
        cli(["--kd", "heteroakd", "kd.heteroakd.weight_axis=rows"] + common)
    with pytest.raises(ValueError, match=r"train\.devices=2"):
        cli(["train.devices=2"] + common)
    with pytest.raises(ValueError, match=r"train\.devices=\[0, 1\]"):
        devices(load_config([], ["train.devices=[0,1]"]))
    assert devices(load_config([], ["train.devices=[1]"])) == [1]
    assert not (tmp_path / "runs").exists()  # no teacher trained, nothing written


def _tiny_teacher(tmp_path, **changes):
    """A teacher.ckpt (untrained) in the tiny run folder; `changes` alter its stored spec."""
    cfg = load_config(["tiny"], ["teacher.name=deeplabv3_mobilenetv2_035"])
    spec = model_spec(cfg.teacher, 13, (32, 32))
    model = build_segmenter(**spec)
    spec.update(changes)
    path = tmp_path / "runs" / "tiny" / "teacher.ckpt"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_model(model, spec, path)
    return cfg, model, path


def test_reloaded_teacher_skips_pretrained_weights(tmp_path, monkeypatch):
    cfg, model, path = _tiny_teacher(tmp_path, pretrained=True)
    seen = []
    real = backbone.create_timm_features
    monkeypatch.setattr(backbone, "create_timm_features",
                        lambda name, pretrained, *a, **k: seen.append(pretrained) or real(name, pretrained, *a, **k))
    loaded = load_teacher(path, cfg, 13)  # pretrained differs from the config's false: not a mismatch
    assert seen == [False]
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v)


@pytest.mark.parametrize("changes,match", [
    ({"width": 16}, r"teacher\.width \(checkpoint 16, config 8\)"),
    ({"num_classes": 5}, r"number of classes \(checkpoint 5, data\.name=synthetic has 13\)"),
])
def test_mismatched_teacher_checkpoint_is_an_error(tmp_path, changes, match):
    _, _, path = _tiny_teacher(tmp_path, **changes)
    with pytest.raises(ValueError, match=match + r".*Delete .*teacher\.ckpt.*run\.name.*run\.teacher_ckpt"):
        cli(["--kd", "none"] + _tiny(tmp_path))
    assert not (path.parent / "teacher").exists()  # nothing trained
