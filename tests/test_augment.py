"""GPU-side augmentation: labels move with the image, depth scales, flipped normals negate x."""
from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from lhl.config import ConfigError, load_config
from lhl.data.augment import DenseAugment
from lhl.data.sources.nyuv2 import NYUv2
from lhl.tasks import LabelFacts, build_task

SPECS = {"semantic": build_task("semantic", "semantic", 5), "depth": build_task("depth", "depth", 1),
         "normal": build_task("normal", "normal", 3)}


def _batch(b=6, h=8, w=10):
    g = torch.Generator().manual_seed(0)
    x = torch.arange(w, dtype=torch.float32).expand(b, 1, h, w)
    normal = torch.nn.functional.normalize(torch.randn(b, 3, h, w, generator=g), dim=1)
    return {
        "image": x.expand(b, 3, h, w).clone() / w,
        "semantic": torch.arange(w).expand(b, h, w).clone() % 5,
        "depth": torch.full((b, 1, h, w), 4.0),
        "normal": normal,
    }


def _data(dataset, normal_x_channel=None, **options):
    return OmegaConf.create({"dataset": dataset, "root": None, "options": options,
                             "normal_x_channel": normal_x_channel})


@pytest.mark.parametrize("make, x", [
    (lambda: DenseAugment(SPECS, scales=(1.0,), facts=LabelFacts(normal_x_channel=2)), 2),
    (lambda: DenseAugment.for_dataset(_data("nyuv2"), SPECS, scales=(1.0,)), 0),
    (lambda: DenseAugment.for_dataset(_data("nyuv2", normal_x_channel=2), SPECS, scales=(1.0,)), 2),
    (lambda: DenseAugment.for_dataset(_data("taskonomy"), SPECS, scales=(1.0,)), 0),
])
def test_flip_only_is_consistent_and_negates_normal_x(make, x):
    torch.manual_seed(3)
    batch = _batch()
    out = make()(batch)
    flipped = out["image"][:, 0, 0, 0] > out["image"][:, 0, 0, -1]
    assert 0 < int(flipped.sum()) < 6  # some samples flipped, some not
    for i in range(6):
        f = (lambda t: t.flip(-1)) if flipped[i] else (lambda t: t)
        assert torch.allclose(out["image"][i], f(batch["image"][i]), atol=1e-5)
        assert torch.equal(out["semantic"][i], f(batch["semantic"][i]))
        n = f(batch["normal"][i]).clone()
        if flipped[i]:
            n[x] = -n[x]
        assert torch.allclose(out["normal"][i], n, atol=1e-6)
    assert out["semantic"].dtype == torch.int64


def test_zoom_divides_depth_and_keeps_label_values():
    batch = _batch()
    out = DenseAugment(SPECS, scales=(2.0,), flip=False)(batch)
    assert torch.allclose(out["depth"], torch.full_like(out["depth"], 2.0))
    assert set(out["semantic"].unique().tolist()) <= set(range(5))
    # a 2x zoom shows half the columns: the image spans about half the original range
    span = out["image"][:, 0, 0, -1] - out["image"][:, 0, 0, 0]
    assert torch.all(span < 0.6) and torch.all(span > 0.3)
    assert out["image"].shape == batch["image"].shape and out["normal"].shape == batch["normal"].shape


def test_for_dataset_takes_the_x_channel_from_the_option_else_the_class():
    assert DenseAugment.for_dataset(_data("synthetic"), SPECS).normal_x == 0
    assert DenseAugment.for_dataset(_data("synthetic", normal_x_channel=1), SPECS).normal_x == 1
    assert DenseAugment.for_dataset(_data("taskonomy", normal_x_channel=2), SPECS).normal_x == 2
    with pytest.raises(ConfigError, match="data.normal_x_channel=3"):
        load_config([], ["data.normal_x_channel=3"])
    assert load_config([], ["data.normal_x_channel=0"]).data.normal_x_channel == 0


def test_for_dataset_without_a_known_x_channel_refuses_normals(monkeypatch):
    monkeypatch.setattr(NYUv2, "NORMAL_X_CHANNEL", None)
    with pytest.raises(ValueError, match="normal_x_channel"):
        DenseAugment.for_dataset(_data("nyuv2"), SPECS)
    assert DenseAugment.for_dataset(_data("nyuv2", normal_x_channel=0), SPECS).normal_x == 0
    DenseAugment.for_dataset(_data("nyuv2"), {"depth": SPECS["depth"]})  # no normals: nothing to decide


def test_zoom_multiplies_inverse_depth_for_cityscapes():
    specs = {"semantic": SPECS["semantic"], "depth": SPECS["depth"]}
    metric = DenseAugment.for_dataset(_data("nyuv2"), specs, scales=(2.0,), flip=False)(_batch())
    inverse = DenseAugment.for_dataset(_data("cityscapes", classes=7), specs, scales=(2.0,), flip=False)(_batch())
    assert torch.allclose(metric["depth"], torch.full_like(metric["depth"], 2.0))
    assert torch.allclose(inverse["depth"], torch.full_like(inverse["depth"], 8.0)), "disparity grows on zoom"
