"""`model.timm_kwargs`: timm constructor arguments of model.backbone (a narrowed ResNet for the CPU
benchmark), through the network, the synthetic pretraining's cache key and the upgrade, with clear errors."""
import pytest
import torch
from omegaconf import OmegaConf

from lhl.config import load_config
from lhl.config.resolve import timm_kwargs
from lhl.engine import synthetic_init as si
from lhl.engine.build import build_network
from lhl.models.backbone import Backbone

QUARTER = {"channels": [16, 32, 64, 128]}


def test_a_quarter_width_resnet_is_built_with_its_channels():
    full, quarter = Backbone("resnet10t", False, 8), Backbone("resnet10t", False, 8, True, QUARTER)
    assert (full.out_channels, quarter.out_channels) == (512, 128)
    n_full, n_quarter = (sum(p.numel() for p in b.parameters()) for b in (full, quarter))
    assert n_quarter < n_full / 10  # 0.34 M against 4.9 M parameters
    assert quarter(torch.randn(1, 3, 32, 40)).shape == (1, 128, 4, 5)  # still dilated to stride 8


def test_the_config_reaches_the_network_and_omegaconf_lists_become_python():
    cfg = load_config([], ["seq=synthetic_small_s1", "model.backbone=resnet10t",
                           "model.timm_kwargs={channels: [16, 32, 64, 128]}"])
    assert timm_kwargs(cfg.model) == QUARTER and type(timm_kwargs(cfg.model)["channels"]) is list
    net = build_network(cfg)
    assert net.backbone.out_channels == 128 and net.backbone.timm_kwargs == QUARTER
    assert timm_kwargs(load_config([], ["seq=synthetic_small_s1"]).model) == {}


def test_bad_arguments_name_the_key_and_the_fix():
    with pytest.raises(ValueError, match=r"model\.timm_kwargs: timm's 'resnet10t' takes no argument chanels"):
        Backbone("resnet10t", False, 8, True, {"chanels": [16, 32, 64, 128]})
    with pytest.raises(ValueError, match=r"model\.timm_kwargs: output_stride are set by lhl"):
        Backbone("resnet10t", False, 8, True, {"output_stride": 16})


def test_the_pretraining_cache_key_has_them_only_when_set():
    model = OmegaConf.create({"backbone": "resnet10t", "output_stride": 8, "zero_init_last": True})
    plain = si.init_key(model, (48, 64))
    assert "timm_kwargs" not in plain  # caches made before the key existed keep their file name
    narrow = si.init_key(OmegaConf.merge(model, {"timm_kwargs": QUARTER}), (48, 64))
    assert narrow["timm_kwargs"] == QUARTER and si.cache_file(narrow, "/c") != si.cache_file(plain, "/c")


def test_an_upgrade_encoder_does_not_inherit_them():
    from lhl.engine.upgrade import build_architecture

    cfg = load_config([], ["seq=synthetic_small_s1", "model.backbone=resnet10t",
                           "model.timm_kwargs={channels: [16, 32, 64, 128]}"])
    other = build_architecture(cfg, "resnet18")
    assert other.backbone.out_channels == 512 and other.backbone.timm_kwargs == {}
