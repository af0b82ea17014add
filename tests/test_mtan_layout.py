"""lhl's sets in MTAN's exact layout: a reader written like the HAD release's / LibMTL's NYUv2 loader
(np.load, np.moveaxis(a, -1, 0), torch.from_numpy, a flip negating normal channel 0) reads a
synthetic set unchanged and agrees with lhl's reader and lhl's `flip_label`."""
from __future__ import annotations

import numpy as np
import torch

from lhl.data.sources.nyuv2 import NYUv2
from lhl.data.sources.synthetic import SyntheticRooms
from lhl.data.synthetic_rooms import writer
from lhl.tasks import build_task
from lhl.tasks.base import LabelFacts


def _release_item(path, index):
    """The release's `NYUv2.__getitem__` (datasetting/datasets.py), flip included, as a function."""
    image = torch.from_numpy(np.moveaxis(np.load(f"{path}/image/{index:d}.npy"), -1, 0))
    semantic = torch.from_numpy(np.load(f"{path}/label/{index:d}.npy"))
    depth = torch.from_numpy(np.moveaxis(np.load(f"{path}/depth/{index:d}.npy"), -1, 0))
    normal = torch.from_numpy(np.moveaxis(np.load(f"{path}/normal/{index:d}.npy"), -1, 0))
    flipped = torch.flip(normal, dims=[2])
    flipped[0, :, :] = -flipped[0, :, :]
    return image.float(), semantic.float(), depth.float(), normal.float(), flipped.float()


def test_release_reader_reads_a_synthetic_set_like_lhl(tmp_path):
    params = writer.set_params(n_train=2, n_val=1, height=12, width=16, seed=0)
    folder = writer.write_set(tmp_path / "set", params, workers=1)
    ds = SyntheticRooms(root=folder, split="train", n_train=2, n_val=1, height=12, width=16)
    spec = build_task("normal", "normal", 3)
    for i in range(2):
        image, semantic, depth, normal, flipped = _release_item(folder / "train", i)
        s = ds[i]
        assert depth.shape == (1, 12, 16) and torch.equal(depth, s["depth"])
        assert torch.equal(image, s["image"]) and torch.equal(semantic.long(), s["semantic"])
        assert torch.equal(normal, s["normal"])
        ours = spec.flip_label(s["normal"][None], torch.tensor([True]), LabelFacts(SyntheticRooms.NORMAL_X_CHANNEL))
        assert torch.equal(flipped, ours[0])
    assert SyntheticRooms.NORMAL_X_CHANNEL == NYUv2.NORMAL_X_CHANNEL == 0
    assert np.load(folder / "val" / "depth" / "0.npy").shape == (12, 16, 1)


def test_flipping_the_image_matches_negating_channel_0():
    """Geometry: a mirrored view of a surface has its camera-frame x negated. Normals recomputed from
    a horizontally flipped depth map equal the stored normals flipped the release's way."""
    from lhl.data.synthetic_rooms.camera import backproject, intrinsics

    v = writer.generate_sample(0, "train", 0, 48, 64)
    depth = v["clean_depth"]

    def normals(d):
        p = backproject(d, intrinsics(*d.shape))
        n = -np.cross(p[:-1, 1:] - p[:-1, :-1], p[1:, :-1] - p[:-1, :-1])
        return n / np.linalg.norm(n, axis=-1, keepdims=True)

    mirrored = normals(np.ascontiguousarray(depth[:, ::-1]))  # OpenCV (x, y, z) of the mirrored view
    stored = v["normal"][:, ::-1].copy()  # the stored normals flipped as the release flips them
    stored[..., 0] = -stored[..., 0]
    cos = (mirrored * stored[:-1, :-1]).sum(-1)
    keep = v["depth"][:, ::-1][:-1, :-1] > 0
    assert keep.sum() > 1000
    assert np.median(np.degrees(np.arccos(np.clip(cos[keep], -1, 1)))) < 2.0
