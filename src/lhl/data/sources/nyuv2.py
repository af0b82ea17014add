"""NYUv2 (13 classes, depth, normals) in the MTAN `.npy` layout: 795 train / 654 val at 288x384.

Label format: the files hold MTAN's layout, read unchanged by the release, MTAN and LibMTL
(`np.moveaxis(np.load(f), -1, 0)`): image float [H, W, 3] in [0, 1]; label [H, W] (-1 = void);
depth float32 [H, W, 1] (a 2-D [H, W] file of an older lhl conversion is read too); normal
float32 [H, W, 3]. A sample gives:
  semantic  int64 [H, W], 0..12 in `CLASSES` order, -1 = void;
  depth     float32 [1, H, W], metres along the optical axis (z-depth, not ray length), 0 = invalid;
  normal    float32 [3, H, W], unit vectors in camera coordinates, all-zero = invalid.

Normal channels: (x, y, z) of the OpenCV camera frame (x right, y down, z forward), normals facing
the camera (z < 0 on a wall seen head on, y = -1 on a floor or table top), so a horizontal flip
negates channel 0 (`NORMAL_X_CHANNEL`). This is the convention of the code that reads these files:
the HAD release's and LibMTL's NYUv2 loaders (and MTAN's later code) negate channel 0 when they
flip. It also agrees with the real NYUv2 display PNG of the test fixtures (normal.png), which
PIL reads as (R, G, B) = (z, y, x), i.e. an (x, y, z) array written by cv2 (BGR). Files written
by `lhl data convert-nyuv2` and the synthetic rooms use the same channels
(`lhl.data.synthetic_rooms.camera.to_mtan_normals`); `data.normal_x_channel` overrides it for
a set stored otherwise. Check a file in one line (z, the channel facing the camera, has a mean
of about -0.6 to -0.8; it should be channel 2):
  python -c "import numpy as np; n=np.load('train/normal/0.npy'); print(n[abs(n).sum(-1)>0].mean(0))"
"""
from __future__ import annotations

import os
from pathlib import Path

from lhl.data.sources.mtan_npy import MTANNpyDataset
from lhl.core.registry import DATASETS

CLASSES = (
    "bed", "books", "ceiling", "chair", "floor", "furniture", "objects",
    "picture", "sofa", "table", "tv", "wall", "window",
)
FOLDERS = {"semantic": "label", "depth": "depth", "normal": "normal"}
OBTAIN = (
    "download MTAN's preprocessed NYUv2 (github.com/lorenmt/mtan, 'nyuv2' .npy release; unpack so that "
    "<root>/train/image/0.npy exists) or convert the official labelled release with `lhl data convert-nyuv2 "
    "--mat nyu_depth_v2_labeled.mat --splits splits.mat --out <root>`"
)


def data_home() -> Path:
    """`$LHL_DATA`, or `./data` when unset: the parent of every dataset folder."""
    return Path(os.environ.get("LHL_DATA", "./data"))


@DATASETS.register("nyuv2")
class NYUv2(MTANNpyDataset):
    """NYUv2 from `root` (default `$LHL_DATA/nyuv2`); see the module docstring for the format."""

    CLASSES = CLASSES
    #: the stored normal channel that holds x (negated by a horizontal flip); see the module docstring
    NORMAL_X_CHANNEL = 0

    def __init__(self, root=None, split="train", tasks=("semantic", "depth", "normal"), **options):
        if options:
            raise TypeError(f"nyuv2 takes no options, got {sorted(options)}; remove them from data.options")
        super().__init__(
            root if root is not None else data_home() / "nyuv2",
            split,
            tasks,
            FOLDERS,
            dataset_name="nyuv2",
            config_key="data.root",
            fix="set data.root=<folder with train/ and val/> or LHL_DATA=<parent of nyuv2/>, "
            "or convert the official release with `lhl data convert-nyuv2`",
            obtain=OBTAIN,
        )

    @classmethod
    def task_info(cls, **options) -> dict:
        return {"semantic": ("semantic", len(CLASSES)), "depth": ("depth", 1), "normal": ("normal", 3)}
