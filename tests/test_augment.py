"""GPU-side augmentation: labels move with the image, depth scales, flipped normals negate x."""
from __future__ import annotations

import torch

from lhl.data.augment import DenseAugment

KINDS = {"semantic": "semantic", "depth": "depth", "normal": "normal"}


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


def test_flip_only_is_consistent_and_negates_normal_x():
    torch.manual_seed(3)
    batch = _batch()
    out = DenseAugment(KINDS, scales=(1.0,), normal_x_channel=2)(batch)
    flipped = out["image"][:, 0, 0, 0] > out["image"][:, 0, 0, -1]
    assert 0 < int(flipped.sum()) < 6  # some samples flipped, some not
    for i in range(6):
        f = (lambda t: t.flip(-1)) if flipped[i] else (lambda t: t)
        assert torch.allclose(out["image"][i], f(batch["image"][i]), atol=1e-5)
        assert torch.equal(out["semantic"][i], f(batch["semantic"][i]))
        n = f(batch["normal"][i]).clone()
        if flipped[i]:
            n[2] = -n[2]
        assert torch.allclose(out["normal"][i], n, atol=1e-6)
    assert out["semantic"].dtype == torch.int64


def test_zoom_divides_depth_and_keeps_label_values():
    batch = _batch()
    out = DenseAugment(KINDS, scales=(2.0,), flip=False)(batch)
    assert torch.allclose(out["depth"], torch.full_like(out["depth"], 2.0))
    assert set(out["semantic"].unique().tolist()) <= set(range(5))
    # a 2x zoom shows half the columns: the image spans about half the original range
    span = out["image"][:, 0, 0, -1] - out["image"][:, 0, 0, 0]
    assert torch.all(span < 0.6) and torch.all(span > 0.3)
    assert out["image"].shape == batch["image"].shape and out["normal"].shape == batch["normal"].shape
