"""Label sets of synthetic rooms: the 13 NYUv2 classes the scenes are drawn with, and a coarser set
of 7 merged from them by what the things are (the way Cityscapes has 19 classes and 7 categories).

The scenes are labelled with the 13 classes; a coarser set is a lookup applied when a label is
read, so every set reads the same generated files. The 7 classes:

| class | merged from | share of the pixels (the first 500 train views of the CPU preset) |
|---|---|---|
| wall | wall | 42 % |
| floor | floor | 25 % |
| ceiling | ceiling | 3.4 % |
| wall hangings | window, picture | 2.5 % |
| bed / sofa | bed, sofa | 8.9 % |
| furniture | chair, table, furniture | 15 % |
| small items | books, objects, tv | 1.1 % |

Why a coarser set exists (docs/benchmarks/synthetic-s1.md): at 48x64 a view holds a handful of pixels of
books, objects, tv or picture, and with 13 classes mIoU keeps rising for as long as training brings
one more of those rare classes into play, so a 10-epoch phase never comes close to convergence.
"""
from __future__ import annotations

from typing import Dict, Tuple

import torch
from torch import Tensor

from lhl.data.synthetic_rooms.scene import CLASSES

COARSE_7 = ("wall", "floor", "ceiling", "wall hangings", "bed / sofa", "furniture", "small items")
_MERGED_7 = {
    "wall": "wall", "floor": "floor", "ceiling": "ceiling", "window": "wall hangings",
    "picture": "wall hangings", "bed": "bed / sofa", "sofa": "bed / sofa", "chair": "furniture",
    "table": "furniture", "furniture": "furniture", "books": "small items", "objects": "small items",
    "tv": "small items",
}

#: {number of classes: (class names, lookup from the 13 drawn classes' ids to this set's ids)}
LABEL_SETS: Dict[int, Tuple[Tuple[str, ...], Tensor]] = {
    13: (CLASSES, torch.arange(len(CLASSES))),
    7: (COARSE_7, torch.tensor([COARSE_7.index(_MERGED_7[c]) for c in CLASSES])),
}


def check_classes(classes) -> int:
    """The number of classes, checked against the label sets there are."""
    if isinstance(classes, bool) or not isinstance(classes, int) or classes not in LABEL_SETS:
        raise ValueError(f"synthetic rooms: data.options.classes={classes!r}; choose one of "
                         f"{sorted(LABEL_SETS)} (the 13 drawn classes, or the 7 merged from them)")
    return classes


def relabel(label: Tensor, classes: int) -> Tensor:
    """A label map of the 13 drawn classes (int64, -1 = void) in the `classes` set (void stays -1)."""
    if check_classes(classes) == len(CLASSES):
        return label
    lookup = LABEL_SETS[classes][1].to(label.device)
    return torch.where(label >= 0, lookup[label.clamp(min=0)], label)
