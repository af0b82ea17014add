"""The `heteroakd_ref` and `headline` presets of `lhl distill`: what they set, and that they run / build."""
import json

import pytest
import torch

import lhl.models.backbone as backbone
from lhl.cli.distill import cli, config_from_args, parse_args
from lhl.distill.config import load_config
from lhl.distill.methods import build_distiller, kd_methods
from lhl.distill.segmenters import build_segmenter
from lhl.distill.student_module import DistillModule
from lhl.distill.checkpoint import model_spec


def test_heteroakd_ref_sets_the_sources_variant():
    cfg = load_config(["heteroakd_ref"])
    h = cfg.kd.heteroakd
    assert (list(h.teacher_stages), list(h.student_stages), h.projector) == ([-1], [-1], "conv_bn_relu")
    assert (h.lambda_kd, h.tau, h.kd_tau, h.reliability) == (0.1, 4.0, 4.0, "softmax")
    assert (cfg.train.optimizer, cfg.train.lr, cfg.train.weight_decay) == ("sgd", 0.02, 1e-4)
    teacher = build_segmenter("deeplabv3_mobilenetv2_035", 3, width=8)
    student = build_segmenter("deeplabv3_mobilenetv2_035", 3, width=8)
    akd = build_distiller("heteroakd", cfg, teacher, student)
    assert len(akd.proj_t) == 1 and [type(m).__name__ for m in akd.proj_t[0]] == ["Conv2d", "BatchNorm2d", "ReLU"]
    module = DistillModule(student, akd, teacher, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay,
                           optimizer=cfg.train.optimizer, max_steps=10)
    opt = module.configure_optimizers()
    sgd, sched = opt["optimizer"], opt["lr_scheduler"]["scheduler"]
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["momentum"] == 0.9
    assert sgd.defaults["weight_decay"] == 1e-4
    assert isinstance(sched, torch.optim.lr_scheduler.PolynomialLR) and sched.power == 0.9


def test_new_switches_are_checked_when_the_config_loads():
    with pytest.raises(ValueError, match=r"kd\.heteroakd\.reliability='bce': choose one of softmax, sigmoid"):
        load_config([], ["kd.heteroakd.reliability=bce"])
    with pytest.raises(ValueError, match=r"kd\.heteroakd\.projector='mlp': choose one of conv, conv_bn_relu"):
        load_config(["heteroakd_ref"], ["kd.heteroakd.projector=mlp"])
    with pytest.raises(ValueError, match=r"kd\.skd\.pool_scale=2\.0"):
        load_config([], ["kd.skd.pool_scale=2"])
    with pytest.raises(ValueError, match=r"kd\.afdcd: mask_ratio=1\.0"):
        load_config([], ["kd.afdcd.mask_ratio=1"])
    assert load_config([], ["kd.heteroakd.reliability=sigmoid"]).kd.heteroakd.reliability == "sigmoid"


def test_heteroakd_ref_tiny_run(tmp_path):
    argv = ["--kd", "heteroakd", "--out", str(tmp_path / "runs"), "--name", "ref", "--config", "tiny",
            "--config", "heteroakd_ref", f"data.synthetic.cache={tmp_path / 'cache'}"]
    assert cli(argv) == 0
    run = tmp_path / "runs" / "ref"
    results = json.loads((run / "results.json").read_text())
    assert set(results) == {"teacher", "heteroakd"} and 0 <= results["heteroakd"]["miou"] <= 1
    assert "projector: conv_bn_relu" in (run / "config.yaml").read_text()


def test_headline_pair_builds_without_downloading(monkeypatch):
    """The preset asks timm for ImageNet weights (pretrained: true) unless told not to; here the
    request is recorded and a model without weights is built instead."""
    asked = []
    real = backbone.create_timm_features
    monkeypatch.setattr(backbone, "create_timm_features",
                        lambda name, pretrained, *a, **k: asked.append((name, pretrained)) or real(name, False, *a, **k))
    cfg = config_from_args(parse_args(["--data", "cityscapes", "--config", "headline"]))
    assert (cfg.data.name, cfg.teacher.name, cfg.student.name) == (
        "cityscapes", "deeplabv3_pvt_v2_b4", "deeplabv3_mobilenetv2_100")
    assert cfg.teacher.pretrained and cfg.student.pretrained
    teacher = build_segmenter(**model_spec(cfg.teacher, 19, (128, 256)), key="teacher")
    student = build_segmenter(**model_spec(cfg.student, 19, (128, 256)), key="student")
    assert asked == [("pvt_v2_b4", True), ("mobilenetv2_100", True)]
    assert teacher.feature_channels == [64, 128, 320, 512] and student.feature_channels[-1] == 320
    for kind in kd_methods():  # every distiller accepts the pair's stages and widths
        build_distiller(kind, cfg, teacher, student)
    off = load_config(["cityscapes", "headline"], ["teacher.pretrained=false", "student.pretrained=false"])
    assert not off.teacher.pretrained and not off.student.pretrained
