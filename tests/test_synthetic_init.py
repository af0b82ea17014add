"""model.init=synthetic_pretrained: material labels, a reproducible pretraining, the cache, the errors."""
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from lhl.data.synthetic_rooms.materials import MATERIALS
from lhl.data.synthetic_rooms.writer import generate_sample
from lhl.engine import synthetic_init as si

TINY = {"seed": 3, "n_views": 4, "epochs": 1, "batch_size": 2, "lr": 1e-3, "head_width": 8}
MODEL = OmegaConf.create({"backbone": "resnet10t", "output_stride": 8, "zero_init_last": True,
                          "pretrained": False, "init": "synthetic_pretrained"})


@pytest.fixture
def tiny_recipe(monkeypatch):
    monkeypatch.setattr(si, "PRETRAIN", TINY)


def test_material_labels_cover_valid_pixels_and_follow_holes():
    view = generate_sample(0, "train", 3, 32, 40)
    mat = view["material"]
    assert mat.shape == (32, 40)
    assert ((mat >= 0) & (mat < len(MATERIALS)) | (mat == -1)).all()
    # -1 exactly where the sensor has holes (the label's invalid pixels)
    np.testing.assert_array_equal(mat == -1, view["label"] == -1)
    # one material per surface instance
    for inst in np.unique(view["instance"]):
        values = np.unique(mat[(view["instance"] == inst) & (mat >= 0)])
        assert len(values) <= 1


def test_pretraining_is_reproducible_and_changes_the_weights(tiny_recipe):
    a = si.pretrain_backbone(MODEL, (16, 24), TINY, log=lambda *_: None)
    b = si.pretrain_backbone(MODEL, (16, 24), TINY, log=lambda *_: None)
    torch.manual_seed(TINY["seed"])
    fresh = si.Backbone("resnet10t", False, 8, True).state_dict()
    assert a.keys() == fresh.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], fresh[k]) for k in a if a[k].is_floating_point())


def test_pretraining_runs_on_one_thread_whatever_the_caller_uses(tiny_recipe, monkeypatch):
    """The weights must not depend on the core count (kernels split sums by thread): pretraining
    runs on one thread, gives the caller's count back, and gives the same weights under 1 or 3."""
    seen, views = [], si.pretraining_views
    monkeypatch.setattr(si, "pretraining_views", lambda *a: seen.append(torch.get_num_threads()) or views(*a))
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(3)
        many = si.pretrain_backbone(MODEL, (16, 24), TINY, log=lambda *_: None)
        assert torch.get_num_threads() == 3
        torch.set_num_threads(1)
        one = si.pretrain_backbone(MODEL, (16, 24), TINY, log=lambda *_: None)
    finally:
        torch.set_num_threads(before)
    assert seen == [1, 1]
    assert all(torch.equal(many[k], one[k]) for k in one)


def test_cache_is_written_once_and_reused(tiny_recipe, tmp_path, monkeypatch):
    messages = []
    first = si.synthetic_pretrained_state(MODEL, (16, 24), cache=tmp_path, log=messages.append)
    assert any("pretraining resnet10t once" in m for m in messages)
    files = list((tmp_path / "init").glob("synthetic_pretrained-*.pt"))
    assert len(files) == 1

    def no_retrain(*a, **k):
        raise AssertionError("pretrained again although cached")

    monkeypatch.setattr(si, "pretrain_backbone", no_retrain)
    again = si.synthetic_pretrained_state(MODEL, (16, 24), cache=tmp_path, log=messages.append)
    assert all(torch.equal(first[k], again[k]) for k in first)
    # another backbone setting is another cache entry
    other = OmegaConf.merge(MODEL, {"zero_init_last": False})
    assert si.cache_file(si.init_key(other, (16, 24)), tmp_path) != files[0]


def test_a_cache_file_of_other_settings_is_refused(tiny_recipe, tmp_path):
    si.synthetic_pretrained_state(MODEL, (16, 24), cache=tmp_path, log=lambda *_: None)
    path = si.cache_file(si.init_key(MODEL, (16, 24)), tmp_path)
    saved = torch.load(path, weights_only=True)
    saved["key"]["backbone"] = "resnet18"
    torch.save(saved, path)
    with pytest.raises(RuntimeError, match="delete the file"):
        si.synthetic_pretrained_state(MODEL, (16, 24), cache=tmp_path, log=lambda *_: None)


def test_build_network_loads_the_cached_backbone(tiny_recipe, tmp_path, monkeypatch):
    from lhl.config import load_config
    from lhl.engine.build import build_network

    monkeypatch.setenv("LHL_CACHE", str(tmp_path))
    cfg = load_config(overrides=["seq=synthetic_small_s1", "model.backbone=resnet10t", "model.init=synthetic_pretrained",
                       "data.options.height=16", "data.options.width=24"])
    net = build_network(cfg)
    state = si.synthetic_pretrained_state(cfg.model, (16, 24), log=lambda *_: None)
    assert all(torch.equal(net.backbone.state_dict()[k], state[k]) for k in state)


@pytest.mark.parametrize("overrides, match", [
    ({"init": "imagenet"}, "model.init='imagenet': choose one of scratch, synthetic_pretrained"),
    ({"pretrained": True}, "set model.pretrained=false"),
])
def test_bad_init_settings_are_refused(overrides, match):
    cfg = OmegaConf.create({"model": {**OmegaConf.to_container(MODEL), **overrides},
                            "data": {"dataset": "synthetic", "options": {}}})
    with pytest.raises(ValueError, match=match):
        si.apply_init(torch.nn.Module(), cfg)
