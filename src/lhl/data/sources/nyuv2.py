"""NYUv2 (13 classes, depth, normals) in the MTAN `.npy` layout: 795 train / 654 val at 288x384.

Label format (what the files hold and what a sample gives):
  semantic  int64 [H, W], 0..12 in `CLASSES` order, -1 = void;
  depth     float32 [1, H, W], metres along the optical axis (z-depth, not ray length), 0 = invalid;
  normal    float32 [3, H, W], unit vectors in camera coordinates, all-zero = invalid.

Normal axis convention (checked on a real NYUv2 frame, ../shared/fixtures/real/nyuv2-scene/
normal.png, decoded n = v / 255 * 2 - 1 channel by channel): with the OpenCV camera frame
x right, y down, z forward (into the scene), the stored channels are (z, y, x) — the reversed,
BGR-like order of the Eigen/Fergus normals MTAN ships — and normals face the camera:
  channel 0 = z: a wall seen head-on is -1;
  channel 1 = y: a floor or table top (facing up) is -1;
  channel 2 = x: a surface on the image's left facing right is +1.
The synthetic rooms use the same convention (`lhl.data.synthetic_rooms.camera.to_mtan_normals`).
"""
from __future__ import annotations

import os
from pathlib import Path

from lhl.data.sources.mtan_npy import MTANNpyDataset
from lhl.registry import DATASETS

CLASSES = (
    "bed", "books", "ceiling", "chair", "floor", "furniture", "objects",
    "picture", "sofa", "table", "tv", "wall", "window",
)
FOLDERS = {"semantic": "label", "depth": "depth", "normal": "normal"}


def data_home() -> Path:
    """`$LHL_DATA`, or `./data` when unset: the parent of every dataset folder."""
    return Path(os.environ.get("LHL_DATA", "./data"))


@DATASETS.register("nyuv2")
class NYUv2(MTANNpyDataset):
    """NYUv2 from `root` (default `$LHL_DATA/nyuv2`); see the module docstring for the format."""

    CLASSES = CLASSES

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
        )

    @classmethod
    def task_info(cls, **options) -> dict:
        return {"semantic": ("semantic", len(CLASSES)), "depth": ("depth", 1), "normal": ("normal", 3)}
