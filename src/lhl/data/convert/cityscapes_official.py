"""Official Cityscapes release -> MTAN layout (128x256; image, label_7, label_19, depth).

Reads `leftImg8bit/{split}/{city}/*_leftImg8bit.png`, `gtFine/{split}/{city}/*_gtFine_labelIds.png`
and `disparity/{split}/{city}/*_disparity.png`; official train -> `train`, official val -> `val`.
Label mappings are those of cityscapesScripts `helpers/labels.py` (id -> trainId, id -> category).
Depth follows the MTAN release, which stores the official disparity "as inverse depth": decoded
disparity d = (p - 1) / 256 pixels for p > 0, divided by 256 again, i.e. (p - 1) / 65536 (this
reproduces the release's range: raw max 32257 -> 0.4922, lorenmt/mtan issue #25); p = 0 -> 0 (invalid).
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from lhl.data.convert import read_png, refuse_stale, resize_image, resize_nearest, save_npy

SIZE = (128, 256)
SPLITS = {"train": "train", "val": "val"}
CATEGORIES = ("flat", "construction", "object", "nature", "sky", "human", "vehicle")

# (labelId, trainId (255 = ignore), category (None = void)) from cityscapesScripts labels.py
_LABELS = (
    (0, 255, None), (1, 255, None), (2, 255, None), (3, 255, None), (4, 255, None),
    (5, 255, None), (6, 255, None),
    (7, 0, "flat"), (8, 1, "flat"), (9, 255, "flat"), (10, 255, "flat"),
    (11, 2, "construction"), (12, 3, "construction"), (13, 4, "construction"),
    (14, 255, "construction"), (15, 255, "construction"), (16, 255, "construction"),
    (17, 5, "object"), (18, 255, "object"), (19, 6, "object"), (20, 7, "object"),
    (21, 8, "nature"), (22, 9, "nature"), (23, 10, "sky"),
    (24, 11, "human"), (25, 12, "human"),
    (26, 13, "vehicle"), (27, 14, "vehicle"), (28, 15, "vehicle"), (29, 255, "vehicle"),
    (30, 255, "vehicle"), (31, 16, "vehicle"), (32, 17, "vehicle"), (33, 18, "vehicle"),
)


def _lookup(column: int) -> np.ndarray:
    """A 256-entry labelId lookup table with -1 for ignore / void and for ids outside 0..33."""
    lut = np.full(256, -1, dtype=np.int64)
    for row in _LABELS:
        v = row[column]
        if column == 1:
            lut[row[0]] = -1 if v == 255 else v
        else:
            lut[row[0]] = -1 if v is None else CATEGORIES.index(v)
    return lut


LABEL_TO_TRAIN = _lookup(1)
LABEL_TO_CATEGORY = _lookup(2)


def map_label_ids(label_ids: np.ndarray, classes: int) -> np.ndarray:
    """Official labelIds -> 19 trainIds or 7 categories (int64, -1 = ignore)."""
    if classes not in (7, 19):
        raise ValueError(f"Cityscapes: classes={classes} is not supported; use 7 or 19")
    lut = LABEL_TO_TRAIN if classes == 19 else LABEL_TO_CATEGORY
    return lut[np.asarray(label_ids).astype(np.int64).clip(0, 255)]


def decode_disparity(png: np.ndarray) -> np.ndarray:
    """Official 16-bit disparity PNG -> MTAN inverse depth (p - 1) / 65536, 0 where p = 0 (invalid)."""
    p = np.asarray(png).astype(np.float64)
    return np.where(p > 0, (p - 1.0) / 256.0 / 256.0, 0.0).astype(np.float32)


def find_frames(src: Path, split: str) -> List[Tuple[Path, Path, Path]]:
    """(image, labelIds, disparity) paths of one official split, sorted by city and frame name."""
    img_root = src / "leftImg8bit" / split
    if not img_root.is_dir():
        raise FileNotFoundError(
            f"Cityscapes: {img_root} not found; --src must hold leftImg8bit/, gtFine/ and disparity/"
        )
    frames = []
    for img in sorted(img_root.glob("*/*_leftImg8bit.png")):
        stem = img.name[: -len("_leftImg8bit.png")]
        city = img.parent.name
        lab = src / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png"
        disp = src / "disparity" / split / city / f"{stem}_disparity.png"
        for p in (lab, disp):
            if not p.is_file():
                raise FileNotFoundError(
                    f"Cityscapes: {p} is missing for {img}; download gtFine_trainvaltest and "
                    f"disparity_trainvaltest into --src"
                )
        frames.append((img, lab, disp))
    if not frames:
        raise FileNotFoundError(f"Cityscapes: no *_leftImg8bit.png under {img_root}/<city>/")
    return frames


def convert_frame(img: Path, lab: Path, disp: Path, size=SIZE) -> Dict[str, np.ndarray]:
    """One official frame as MTAN arrays at `size`."""
    ids = resize_nearest(read_png(lab), size)
    return {
        "image": resize_image(read_png(img)[..., :3], size),
        "label_19": map_label_ids(ids, 19).astype(np.float32),
        "label_7": map_label_ids(ids, 7).astype(np.float32),
        "depth": decode_disparity(resize_nearest(read_png(disp), size))[..., None],
    }


def convert(src, out, size=SIZE, splits: Optional[Sequence[str]] = None) -> Dict[str, int]:
    """Convert every official split present; returns {mtan_split: frame count}.

    Refuses split folders of `out` that already hold files (see `refuse_stale`).
    """
    src, out = Path(src), Path(out)
    refuse_stale(out, [SPLITS[s] for s in splits or SPLITS])
    counts = {}
    for official in splits or SPLITS:
        frames = find_frames(src, official)
        for i, paths in enumerate(frames):
            for folder, arr in convert_frame(*paths, size=size).items():
                save_npy(out / SPLITS[official] / folder / f"{i}.npy", arr)
        counts[SPLITS[official]] = len(frames)
    return counts


def cli(argv=None) -> int:
    """`lhl data convert-cityscapes --src DIR --out DIR`."""
    ap = argparse.ArgumentParser(prog="lhl data convert-cityscapes", description=__doc__.split("\n")[0])
    ap.add_argument("--src", required=True, help="folder holding leftImg8bit/, gtFine/, disparity/")
    ap.add_argument("--out", required=True,
                    help="output folder (MTAN layout), e.g. $LHL_DATA/cityscapes; "
                    "its split folders must be new or empty")
    ap.add_argument("--splits", nargs="+", default=list(SPLITS), choices=list(SPLITS))
    args = ap.parse_args(argv)
    try:
        refuse_stale(args.out, [SPLITS[s] for s in args.splits])
    except FileExistsError as err:
        ap.error(str(err))
    counts = convert(args.src, args.out, splits=args.splits)
    for split, n in counts.items():
        print(f"cityscapes: wrote {n} frames to {Path(args.out) / split}")
    return 0
