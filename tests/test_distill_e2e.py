"""Segmenters of both families, the distill config, and a tiny end-to-end `lhl distill` on CPU."""
import json

import pytest
import torch

from lhl.distill.run import cli, config_from_args, load_config, parse_args
from lhl.distill.segmenters import build_segmenter

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
    assert set(results) == {"teacher", "none", "kd", "cwd", "heteroakd"}
    for r in results.values():
        assert 0 <= r["miou"] <= 1 and 0 <= r["pixacc"] <= 1
    table = (run / "results.md").read_text()
    for label in ("teacher", "student alone", "logit KD", "CWD", "HeteroAKD"):
        assert f"| {label} |" in table
    assert (run / "teacher.ckpt").exists() and (run / "config.yaml").exists()
    header = (run / "heteroakd" / "metrics.csv").read_text().splitlines()[0]
    assert "train/akd" in header and "train/teacher_share" in header

    # a second run reuses the saved teacher (same val numbers, no teacher training)
    again = tmp_path / "again"
    assert cli(["--kd", "heteroakd", "--teacher-ckpt", str(run / "teacher.ckpt"), "--out", str(again)]
               + common[2:]) == 0
    second = json.loads((again / "tiny" / "results.json").read_text())
    assert set(second) == {"teacher", "heteroakd"}
    assert second["teacher"]["miou"] == pytest.approx(results["teacher"]["miou"])
    assert second["teacher"]["pixacc"] == pytest.approx(results["teacher"]["pixacc"])
    assert not (again / "tiny" / "teacher.ckpt").exists()
