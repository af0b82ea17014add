"""Cityscapes in the MTAN `.npy` layout: 2975 train / 500 val at 128x256.

Folders `{split}/{image,label_7,label_19,depth}/{i}.npy`. Task "semantic" reads `label_19`
(the 19 official train ids) or `label_7` (the 7 official categories) by the `classes` option;
-1 = ignore. Task "depth" is the release's inverse depth (official disparity / 65536, see
`lhl.data.convert.cityscapes_official`), 0 = invalid: it grows as things come closer, so the
scale augmentation multiplies it by the zoom (`DEPTH_IS_INVERSE`). Build it with
`lhl data convert-cityscapes`.
"""
from __future__ import annotations

from lhl.data.sources.mtan_npy import MTANNpyDataset
from lhl.data.validate import BadInput
from lhl.data.sources.nyuv2 import data_home
from lhl.core.registry import DATASETS

CLASSES_19 = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
    "motorcycle", "bicycle",
)
CLASSES_7 = ("flat", "construction", "object", "nature", "sky", "human", "vehicle")
CLASS_NAMES = {19: CLASSES_19, 7: CLASSES_7}
OBTAIN = (
    "download MTAN's preprocessed Cityscapes (github.com/lorenmt/mtan, 'cityscapes' .npy release; unpack so "
    "that <root>/train/image/0.npy exists) or convert the official release (leftImg8bit, gtFine, disparity) "
    "with `lhl data convert-cityscapes --src <official folder> --out <root>`"
)


def _check_classes(classes) -> int:
    if classes not in CLASS_NAMES:
        raise BadInput(
            f"cityscapes: option classes={classes!r} is not supported; set data.options.classes to 7 or 19"
        )
    return int(classes)


@DATASETS.register("cityscapes")
class Cityscapes(MTANNpyDataset):
    """Cityscapes from `root` (default `$LHL_DATA/cityscapes`); see the module docstring."""

    #: depth is disparity-like (larger = closer): zooming in multiplies it instead of dividing
    DEPTH_IS_INVERSE = True

    def __init__(self, root=None, split="train", tasks=("semantic", "depth"), classes=19, **options):
        if options:
            raise TypeError(
                f"cityscapes takes only the option 'classes', got {sorted(options)}; remove them from data.options"
            )
        self.classes = _check_classes(classes)
        self.CLASSES = CLASS_NAMES[self.classes]
        super().__init__(
            root if root is not None else data_home() / "cityscapes",
            split,
            tasks,
            {"semantic": f"label_{self.classes}", "depth": "depth"},
            dataset_name="cityscapes",
            config_key="data.root",
            fix="set data.root=<folder with train/ and val/> or LHL_DATA=<parent of cityscapes/>, "
            "or convert the official release with `lhl data convert-cityscapes`",
            obtain=OBTAIN,
        )

    @classmethod
    def task_info(cls, classes=19, **options) -> dict:
        return {"semantic": ("semantic", _check_classes(classes)), "depth": ("depth", 1)}
