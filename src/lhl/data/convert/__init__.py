"""Converters from official dataset releases to the MTAN .npy layout, and the helpers they share.

The MTAN layout (as in the release's preprocessed data): `{out}/{train,val}/{folder}/{i}.npy`,
image (H, W, 3) float32 in [0, 1], labels (H, W) float32 with -1 = ignore, depth (H, W, 1)
float32 with 0 = invalid, normal (H, W, 3) float32 with all-zero = invalid.
"""
from __future__ import annotations

from pathlib import Path
from typing import Tuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from lhl.core.io import atomic_open


def save_npy(path: Path, array: np.ndarray) -> None:
    """Write one .npy atomically (temp file in the same folder, then os.replace)."""
    with atomic_open(path) as f:
        np.save(f, array)


def refuse_stale(out, splits) -> None:
    """Refuse to convert into split folders of `out` that already hold files.

    Files are numbered 0..n-1 and never deleted, so a smaller re-conversion would leave an earlier
    one's higher-numbered files behind, and the loader would read them back as samples.
    """
    out = Path(out)
    for split in splits:
        folder = out / split
        if folder.is_dir() and any(folder.iterdir()):
            names = sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir())
            files = sum(1 for p in folder.rglob("*") if p.is_file())
            raise FileExistsError(
                f"--out {out}: {folder} already holds {', '.join(names[:4])}{', ...' if len(names) > 4 else ''} "
                f"({files} files) from an earlier conversion, whose left-over files would be read back as "
                f"samples; fix: choose a new or empty --out, or delete {folder}"
            )
        if folder.exists() and not folder.is_dir():
            raise FileExistsError(f"--out {out}: {folder} is a file; fix: choose a new or empty --out")


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


__all__ = ["save_npy", "read_png", "refuse_stale", "resize_nearest", "resize_image"]
