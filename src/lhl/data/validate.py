"""Checks of what a dataset's files hold, so that bad input stops with one error naming the file, the
field and the fix, before training wherever it can be found then.

- `check_array`: one loaded array (every sample a source reads goes through it): the dtype, and the
  values a user's conversion gets wrong — class ids beyond the dataset's classes, NaN / infinite or
  negative depth (lhl marks a missing depth with 0), normals that are all zero or not unit vectors
  (an image-encoded normal map stored as it is), an image in 0..255 stored as floats.
- `preflight`: before the first phase (from the data module's `prepare_data`): both splits open
  (a missing or empty split, a label folder with a file less, a task the dataset lacks), the train
  split has at least one image per phase, and a spread of samples of each split loads and passes
  `check_array` (all of them for a small set); every other sample is checked when it is read.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from lhl.core.errors import MissingInput, UsageError

#: a set with at most this many samples per split is checked whole before training
PREFLIGHT_ALL = 64
#: otherwise this many samples, spread over the split
PREFLIGHT_SPREAD = 16


class BadInput(UsageError):
    """A data file holds what lhl cannot train on; the message names the file, the field and the fix."""


class MissingFile(MissingInput):
    """A split lacks a file its other folders have; the message names it, the field and the fix."""


def _fail(dataset: str, path, field: str, what: str, fix: str) -> None:
    raise BadInput(f"{dataset}: {path}: field '{field}': {what}; fix: {fix}")


def check_array(path, field: str, kind: str, a: np.ndarray, classes: Optional[int] = None, dataset: str = "data") -> None:
    """Raise `BadInput` when array `a` read from `path` for `field` (of task kind `kind`: image,
    semantic, depth, normal, scalar) is of the wrong dtype or holds values lhl cannot train on."""
    dt = a.dtype
    numeric = np.issubdtype(dt, np.integer) or np.issubdtype(dt, np.floating)
    if not numeric or dt == np.bool_:
        _fail(dataset, path, field, f"dtype {dt} is not a number type",
              "store images as uint8 or float in [0, 1], class ids as integers, depth and normals as float32")
    floating = np.issubdtype(dt, np.floating)
    if floating and not np.isfinite(a).all():
        n = int((~np.isfinite(a)).sum())
        fix = ("mark a missing depth with 0 (lhl's invalid value), e.g. np.nan_to_num(d, nan=0, posinf=0, neginf=0)"
               if kind == "depth" else "replace them (a missing label pixel: 0 for depth and normals, -1 for classes)")
        _fail(dataset, path, field, f"{n} NaN or infinite value(s)", fix)
    if kind == "image":
        if floating and a.size and float(a.max()) > 1.0 + 1e-3:
            _fail(dataset, path, field, f"float image with values up to {float(a.max()):.4g}, not in [0, 1]",
                  "divide by 255 (or store the image as uint8)")
        if not floating and dt != np.uint8:
            _fail(dataset, path, field, f"image of dtype {dt}", "store uint8 (0..255) or float in [0, 1]")
    elif kind == "semantic":
        if floating and a.size and float(np.abs(a - np.rint(a)).max()) > 0.01:  # float ids of MTAN's files are fine
            _fail(dataset, path, field, f"class ids of dtype {dt} with fractional values (an interpolated "
                  "or normalised label map)", "store integer class ids, resized with nearest-neighbour")
        top = int(a.max()) if a.size else -1
        if classes is not None and top >= classes:
            _fail(dataset, path, field, f"class id {top} is out of range: this dataset has {classes} classes "
                  f"(ids 0..{classes - 1}, negative = void)",
                  "map the ids to 0..{} and unlabelled pixels to -1, or choose the matching class set in "
                  "data.options".format(classes - 1))
    elif kind == "depth":
        if not floating:
            _fail(dataset, path, field, f"depth of dtype {dt}",
                  "store depth in metres as float32 (0 = missing); raw sensor units must be converted")
        if a.size and float(a.min()) < 0:
            _fail(dataset, path, field, f"negative depth ({float(a.min()):.4g})", "store depth >= 0, 0 = missing")
    elif kind == "normal":
        if not floating:
            _fail(dataset, path, field, f"normals of dtype {dt}",
                  "store float32 unit vectors (x, y, z) in [-1, 1]; decode an 8-bit normal image as v / 255 * 2 - 1")
        length = np.linalg.norm(a.astype(np.float32).reshape(-1, a.shape[-1]), axis=1)
        nonzero = length[length > 0]
        if nonzero.size == 0:
            _fail(dataset, path, field, "every normal is zero-length (all pixels marked missing)",
                  "write the normal map (unit vectors; all-zero only where a pixel has no normal)")
        if float(a.min()) >= 0:
            _fail(dataset, path, field, "normals have no negative component (an image-encoded map in [0, 1] or "
                  "[0, 255] stored as it is)", "decode to unit vectors in [-1, 1]: v / 255 * 2 - 1 (or v * 2 - 1)")
        med = float(np.median(nonzero))
        if abs(med - 1.0) > 0.1:
            _fail(dataset, path, field, f"normals are not unit vectors (median length {med:.3g})",
                  "store unit vectors (x, y, z) in [-1, 1]; an image-encoded map needs v / 255 * 2 - 1 "
                  "(or v * 2 - 1 from [0, 1]) and normalising")


def spread(n: int) -> Sequence[int]:
    """The sample indices `preflight` loads: all of a small split, else a spread with both ends."""
    if n <= PREFLIGHT_ALL:
        return range(n)
    return sorted({int(round(i * (n - 1) / (PREFLIGHT_SPREAD - 1))) for i in range(PREFLIGHT_SPREAD)})


def preflight(build, tasks: Sequence[str], phases: int, where: str = "data.root") -> None:
    """`build(split, tasks)` -> a dataset; open both splits with every task of the sequence, check
    the train split has an image per phase, and load a spread of samples (see the module's notes)."""
    for split in ("train", "val"):
        ds = build(split, list(tasks))
        n = len(ds)
        root = getattr(ds, "root", None)
        place = Path(root) / split if root is not None else f"the {split} split"
        if n == 0:
            raise BadInput(f"{place}: the {split} split is empty ({where}); fix: put the {split} samples there")
        if split == "train" and n < phases:
            raise BadInput(
                f"{place}: field {where}: the train split has {n} image(s), fewer than the {phases} phases of "
                "the sequence (each phase trains on its own slice); fix: add images, or train fewer tasks "
                "(sequence.tasks)")
        for i in spread(n):
            ds[i]
