"""Converters from official dataset releases to the MTAN .npy layout, and the helpers they share.

The MTAN layout (as in the release's preprocessed data): `{out}/{train,val}/{folder}/{i}.npy`,
image (H, W, 3) float32 in [0, 1], labels (H, W) float32 with -1 = ignore, depth (H, W, 1)
float32 with 0 = invalid, normal (H, W, 3) float32 with all-zero = invalid.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Tuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image


def save_npy(path: Path, array: np.ndarray) -> None:
    """Write one .npy atomically (temp file in the same folder, then os.replace)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".npy.tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, array)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read_png(path: Path) -> np.ndarray:
    """A PNG as a numpy array in its stored depth (uint8 RGB / L, or uint16 / int32 for 16-bit)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    with Image.open(path) as im:
        return np.array(im)


def resize_nearest(a: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of an (H, W) or (H, W, C) array, sampling source pixel floor((i+0.5)*scale)."""
    h, w = a.shape[:2]
    rows = np.minimum(((np.arange(size[0]) + 0.5) * h / size[0]).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(size[1]) + 0.5) * w / size[1]).astype(np.int64), w - 1)
    return a[rows[:, None], cols[None, :]]


def resize_image(rgb: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """An (H, W, 3) uint8 image resized (bilinear, antialiased on downscale) to float32 [0, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float() / 255.0
    if tuple(x.shape[-2:]) != tuple(size):
        x = F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False, antialias=True)
    return x[0].permute(1, 2, 0).clamp(0, 1).numpy().astype(np.float32)


__all__ = ["save_npy", "read_png", "resize_nearest", "resize_image"]
