"""The parts of `lhl distill`: the timm encoders, the distiller registry, the typed config and the module."""
import pytest
import timm
import torch

from lhl.config.compose import ConfigError
from lhl.core.registry import DISTILLERS
from lhl.distill import HeteroAKD, LogitKD, StudentOnly
from lhl.distill.config import load_config, preset_dir
from lhl.distill.methods import build_distiller, kd_methods, label
from lhl.distill.student_module import DistillModule
from lhl.distill.segmenters import build_segmenter
from lhl.models.backbone import Backbone, Encoder

TINY_PVT = {"embed_dims": [8, 16, 32, 64], "depths": [1, 1, 1, 1], "num_heads": [1, 1, 2, 2]}
#: a Swin whose deepest stage has 16 channels, at stride 32: a 512-pixel-high input makes H == C
TINY_SWIN = {"embed_dim": 2, "depths": [1, 1, 1, 1], "num_heads": [1, 1, 1, 1], "window_size": 2,
             "img_size": (512, 64)}


def test_backbone_is_nchw_when_height_equals_channels(monkeypatch):
    real = timm.create_model
    monkeypatch.setattr(timm, "create_model", lambda name, **k: real(name, **{**k, **TINY_SWIN}))
    net = Backbone("swin_tiny_patch4_window7_224", output_stride=8).eval()  # no stochastic depth
    x = torch.rand(1, 3, 512, 64)
    raw = net.body(x)[-1]
    assert (net.out_channels, net.stride) == (16, 32)
    assert raw.shape == (1, 16, 2, 16)  # NHWC with H == C: a shape-based guess keeps it as is
    out = net(x)
    assert out.shape == (1, 16, 16, 2)
    assert torch.equal(out, raw.permute(0, 3, 1, 2))
    assert torch.equal(out, Encoder.forward(net, x)[-1])


def test_backbone_keeps_its_attributes_and_checkpoint_keys():
    net = Backbone("resnet18", pretrained=False, output_stride=8)
    assert (net.name, net.out_channels, net.stride) == ("resnet18", 512, 8)
    assert all(k.startswith("body.") for k in net.state_dict())
    assert net(torch.rand(1, 3, 64, 64)).shape == (1, 512, 8, 8)
    with pytest.raises(ValueError, match="model.backbone: timm has no model 'nonet'"):
        Backbone("nonet")


def test_registry_gives_the_methods_in_table_order():
    assert kd_methods() == ("none", "kd", "cwd", "skd", "cirkd", "afdcd", "heteroakd")
    assert [label(k) for k in ("teacher",) + kd_methods()] == [
        "teacher", "student alone", "logit KD", "CWD", "SKD", "CIRKD", "Af-DCD", "HeteroAKD"]
    assert DISTILLERS.get("heteroakd") is HeteroAKD and DISTILLERS.get("none") is StudentOnly
    cfg = load_config([], ["kd.kd.tau=2.5"])
    kd = build_distiller("kd", cfg, None, None)
    assert isinstance(kd, LogitKD) and (kd.tau, kd.weight) == (2.5, 1.0)
    with pytest.raises(ValueError, match="run.kd='fitnet': choose one of none, kd, cwd, skd, cirkd, afdcd, heteroakd or all"):
        build_distiller("fitnet", cfg, None, None)


def test_every_preset_loads_and_default_yaml_only_sets_values():
    for path in sorted(preset_dir().glob("*.yaml")):
        load_config([path.stem])
    cfg = load_config()
    assert (cfg.data.name, cfg.teacher.name, cfg.student.name, cfg.run.kd) == (
        "synthetic", "deeplabv3_resnet18", "segformer_pvt_v2_b0", "all")
    assert cfg.kd.heteroakd.teacher_stages == [-2, -1] and cfg.kd.heteroakd.weight_axis == "class"


def test_config_errors_name_the_key_and_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  lrr: 0.1\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: unknown config key 'train\.lrr'"):
        load_config([str(bad)])
    with pytest.raises(ConfigError, match=r"command line: bad value for 'train\.lr'"):
        load_config([], ["train.lr=fast"])
    with pytest.raises(ConfigError, match=r"train\.optimizer='rmsprop': choose one of adam, adamw, sgd"):
        load_config([], ["train.optimizer=rmsprop"])
    with pytest.raises(FileNotFoundError, match="presets: .*'tiny'"):
        load_config(["nonesuch"])
    cfg = load_config([], ["kd.heteroakd.student_stages=[-1,decoder]", "data.synthetic.cache=/c"])
    assert list(cfg.kd.heteroakd.student_stages) == [-1, "decoder"] and cfg.data.synthetic.cache == "/c"


def test_optimizer_comes_from_the_shared_factory():
    student = build_segmenter("segformer_pvt_v2_b0", 3, width=8, encoder_kwargs=TINY_PVT)
    opt = DistillModule(student, StudentOnly(), optimizer="sgd", lr=0.1).configure_optimizers()
    assert isinstance(opt, torch.optim.SGD) and opt.defaults["momentum"] == 0.9
    sched = DistillModule(student, StudentOnly(), optimizer="adam", max_steps=5).configure_optimizers()
    assert isinstance(sched["optimizer"], torch.optim.Adam)


def test_teacher_runs_in_inference_mode_and_its_outputs_can_be_saved_for_backward():
    torch.manual_seed(0)
    teacher = build_segmenter("deeplabv3_mobilenetv2_035", 3, width=8)
    student = build_segmenter("segformer_pvt_v2_b0", 3, width=8, encoder_kwargs=TINY_PVT)
    cfg = load_config([], ["kd.heteroakd.teacher_stages=[-1]", "kd.heteroakd.student_stages=[-1]"])
    module = DistillModule(student, build_distiller("heteroakd", cfg, teacher, student), teacher)
    modes = []
    teacher.register_forward_hook(lambda *a: modes.append(torch.is_inference_mode_enabled()))
    x, target = torch.rand(2, 3, 32, 32), torch.randint(-1, 3, (2, 32, 32))
    t_out = module.teacher_outputs(x)
    assert modes == [True]
    assert not t_out["logits"].is_inference() and not any(f.is_inference() for f in t_out["features"])
    module.distiller(student(x), t_out, target)["loss"].backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert any(p.grad is not None for p in student.parameters())
