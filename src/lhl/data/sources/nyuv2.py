"""NYUv2 (13 classes, depth, normals) in the MTAN `.npy` layout: 795 train / 654 val at 288x384.

Label format (what the files hold and what a sample gives):
  semantic  int64 [H, W], 0..12 in `CLASSES` order, -1 = void;
  depth     float32 [1, H, W], metres along the optical axis (z-depth, not ray length), 0 = invalid;
  normal    float32 [3, H, W], unit vectors in camera coordinates, all-zero = invalid.

Normal channel order (UNVERIFIED against a real MTAN .npy; none was available). lhl assumes
channels (z, y, x) of the OpenCV camera frame (x right, y down, z forward), normals facing the
camera, so the horizontal flip negates channel 2 (`NORMAL_X_CHANNEL`). The evidence:
  - measured: the display PNG ../shared/fixtures/real/nyuv2-scene/normal.png, read with PIL as
    R, G, B and decoded n = v / 255 * 2 - 1, gives a head-on wall R = -1, a table top G = -1 and
    a surface on the image's left facing right B = +1, i.e. (R, G, B) = (z, y, x);
  - but if that PNG was written by cv2 (which stores arrays as BGR), the array behind it held
    (x, y, z); and the MTAN author's later code (Auto-Lambda, LibMTL) negates channel 0 when it
    flips these .npy files, which also implies channel 0 = x.
So the release may well hold (x, y, z). Check a real file in one line:
  python -c "import numpy as np; n=np.load('train/normal/0.npy'); print(n[abs(n).sum(-1)>0].mean(0))"
the channel whose mean is strongly negative (about -0.6 to -0.8: normals facing an OpenCV camera)
is z. If that is channel 2, set `data.normal_x_channel: 0`. Files written by
`lhl data convert-nyuv2` and the synthetic rooms are (z, y, x) by construction
(`lhl.data.synthetic_rooms.camera.to_mtan_normals`), so the default is right for them.
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
    NORMAL_X_CHANNEL = 2

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
