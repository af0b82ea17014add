"""Official NYUv2 labelled release (nyu_depth_v2_labeled.mat + splits.mat) -> MTAN layout at 288x384.

Inputs: `images` HxWx3xN uint8, `depths` HxWxN metres, `labels` HxWxN (894 class ids, 0 = void),
in a MATLAB v7.3 (HDF5, read lazily with h5py) or v5 (scipy) .mat; splits.mat `trainNdxs` /
`testNdxs` (1-based; 795 / 654) -> MTAN `train` / `val`, frames in ascending index order.
Labels: 894 -> 40 classes by `mapClass` of classMapping40.mat (Gupta et al., CVPR 2013), then
40 -> 13 by class13Mapping.mat of ankurhanda/nyuv2-meta-data (the SceneNet RGB-D 13 classes:
bed, books, ceiling, chair, floor, furniture, objects, picture, sofa, table, tv, wall, window);
written value - 1 so void -> -1. Depth: metres, nearest. Normals are not in the .mat: by default
they are computed from the depth (see `normals_from_depth`), or written as zeros (= invalid).
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Dict, Tuple

import numpy as np

from lhl.data.convert import refuse_stale, resize_image, resize_nearest, save_npy

try:  # the converter's own extra: pip install 'lhl[convert]'
    from scipy import io as sio
    from scipy.ndimage import gaussian_filter
except ImportError as _missing:  # pragma: no cover - exercised by a test that hides scipy
    sio = gaussian_filter = None
    _SCIPY_ERROR = _missing


def _need_scipy() -> None:
    if sio is None:
        raise ImportError("lhl data convert-nyuv2 needs scipy (and h5py for MATLAB v7.3 files): "
                          "pip install 'lhl[convert]'") from _SCIPY_ERROR

SIZE = (288, 384)
# Kinect RGB intrinsics of the NYU Depth V2 toolbox (camera_params.m), for the 640x480 frames.
FX, FY, CX, CY = 5.1885790117450188e02, 5.1946961112127485e02, 3.2558244941119034e02, 2.5373616633400465e02

# classMapping40.mat `mapClass`: entry k-1 is the NYU40 class of raw NYUv2 class k (1..894).
_MAP_894_TO_40 = (
    40, 40, 3, 22, 5, 40, 12, 38, 40, 40, 2, 39, 40, 40, 26, 40, 24, 40, 7, 40, 1, 40, 40, 34, 38,
    29, 40, 8, 40, 40, 40, 40, 38, 40, 40, 14, 40, 38, 40, 40, 40, 15, 39, 40, 30, 40, 40, 39, 40,
    39, 38, 40, 38, 40, 37, 40, 38, 38, 9, 40, 40, 38, 40, 11, 38, 40, 40, 40, 40, 40, 40, 40, 40,
    40, 40, 40, 40, 40, 38, 13, 40, 40, 6, 40, 23, 40, 39, 10, 16, 40, 40, 40, 40, 38, 40, 40, 40,
    40, 40, 40, 40, 40, 40, 38, 40, 39, 40, 40, 40, 40, 39, 38, 40, 40, 40, 40, 40, 40, 18, 40, 40,
    19, 28, 33, 40, 40, 40, 40, 40, 40, 40, 40, 40, 38, 27, 36, 40, 40, 40, 40, 21, 40, 20, 35, 40,
    40, 40, 40, 40, 40, 40, 40, 38, 40, 40, 40, 4, 32, 40, 40, 39, 40, 39, 40, 40, 40, 40, 40, 17,
    40, 40, 25, 40, 39, 40, 40, 40, 40, 40, 40, 40, 40, 39, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40,
    40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 39, 40, 40, 40, 40, 40, 40, 40, 40, 40, 39, 38, 38, 40,
    40, 39, 40, 39, 40, 38, 39, 38, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 39, 40, 38, 40, 40, 38,
    38, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 38, 40, 40, 40, 40, 40, 39, 40, 40, 40,
    40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 39, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40,
    40, 39, 40, 40, 40, 38, 40, 40, 39, 40, 40, 38, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 39,
    40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 31, 40, 40, 40, 40, 40, 40,
    40, 38, 40, 40, 38, 39, 39, 40, 40, 40, 40, 40, 40, 40, 40, 40, 38, 40, 39, 40, 40, 39, 40, 40,
    40, 38, 40, 40, 40, 40, 40, 40, 40, 40, 38, 39, 40, 40, 40, 40, 40, 40, 38, 40, 40, 40, 40, 40,
    40, 40, 40, 40, 40, 40, 38, 39, 40, 40, 40, 40, 40, 40, 40, 39, 40, 40, 40, 40, 40, 40, 38, 40,
    40, 40, 38, 40, 39, 40, 40, 40, 39, 39, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 39, 40, 40, 40,
    40, 40, 40, 40, 40, 40, 40, 40, 40, 39, 39, 40, 40, 39, 39, 40, 40, 40, 40, 38, 40, 40, 38, 39,
    39, 40, 39, 40, 39, 38, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 39, 40, 38, 40, 39, 40, 40,
    40, 40, 40, 39, 39, 40, 40, 40, 40, 40, 40, 39, 39, 40, 40, 38, 39, 39, 40, 40, 40, 40, 40, 40,
    40, 40, 40, 39, 39, 40, 40, 40, 40, 39, 40, 40, 40, 40, 40, 39, 40, 40, 39, 40, 40, 40, 40, 40,
    40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 39, 38, 40, 40, 40, 40, 40, 40, 40, 39, 38, 39, 40, 38,
    39, 40, 39, 40, 39, 40, 40, 40, 40, 40, 40, 40, 40, 38, 40, 40, 40, 40, 40, 38, 40, 40, 39, 40,
    40, 40, 39, 40, 38, 40, 40, 40, 40, 40, 40, 40, 40, 38, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40,
    40, 40, 40, 40, 40, 40, 39, 38, 40, 40, 38, 40, 40, 38, 40, 40, 40, 40, 40, 40, 40, 40, 40, 39,
    40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 38, 40, 40, 38, 40, 40, 40, 40,
    40, 40, 40, 40, 40, 40, 40, 38, 38, 38, 40, 40, 40, 38, 40, 40, 40, 38, 38, 40, 40, 40, 40, 40,
    40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 38, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40,
    40, 40, 38, 40, 38, 39, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40,
    40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 39, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40,
    40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40,
    39, 40, 39, 40, 40, 40, 40, 38, 38, 40, 40, 40, 38, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40,
    40, 40, 40, 39, 40, 40, 39, 40, 40, 39, 39, 40, 40, 40, 40, 40, 40, 40, 40, 39, 39, 39, 40, 40,
    40, 40, 39, 40, 40, 40, 40, 40, 40, 40, 40, 39, 40, 40, 40, 40, 40, 39, 40, 40, 40, 40, 40, 40,
    40, 40, 40, 40, 40, 40, 40, 40, 38, 40, 40, 40, 40, 40, 40, 40, 39, 40, 40, 38, 40, 39, 40, 40,
    40, 40, 38, 40, 40, 40, 40, 40, 38, 40, 40, 40, 40, 40, 40, 40, 39, 40, 40, 40, 40, 40, 40, 40,
    40, 40, 39, 40, 40
)
# class13Mapping.mat: NYU40 class -> 13 classes (index 0 = void).
NYU40_TO_13 = np.array(
    [0, 12, 5, 6, 1, 4, 9, 10, 12, 13, 6, 8, 6, 13, 10, 6, 13, 6, 7, 7, 5,
     7, 3, 2, 6, 11, 7, 7, 7, 7, 7, 7, 6, 7, 7, 7, 7, 7, 7, 6, 7],
    dtype=np.int64,
)
NYU894_TO_40 = np.concatenate([[0], np.array(_MAP_894_TO_40, dtype=np.int64)])
NYU894_TO_13 = NYU40_TO_13[NYU894_TO_40]


def map_labels13(labels: np.ndarray, source: str = "labels") -> np.ndarray:
    """Raw NYUv2 class ids (0 = void, 1..894) -> 13-class ids (0 = void, 1..13)."""
    lab = np.asarray(labels).astype(np.int64)
    if lab.size and (lab.min() < 0 or lab.max() >= len(NYU894_TO_13)):
        raise ValueError(
            f"{source}: label ids {lab.min()}..{lab.max()} fall outside 0..894; "
            "pass the official nyu_depth_v2_labeled.mat"
        )
    return NYU894_TO_13[lab]


def label13_to_mtan(label13: np.ndarray, size=SIZE) -> np.ndarray:
    """13-class labels (0 = void) -> the MTAN label file: nearest resize, value - 1, float32."""
    return (resize_nearest(np.asarray(label13).astype(np.int64), size) - 1).astype(np.float32)


def normals_from_depth(depth: np.ndarray, fx=FX, fy=FY, cx=CX, cy=CY, sigma: float = 1.5) -> np.ndarray:
    """Surface normals (H, W, 3) from a metric z-depth map, in the lhl NYUv2 convention.

    Back-projects pixels to camera points (x right, y down, z forward), smooths the valid points
    with a Gaussian of `sigma` px (normalised convolution), takes central differences along rows
    and columns and their cross product, turns each normal towards the camera and stores
    channels (x, y, z) of that frame, MTAN's layout (channel 0 = x, negated by a horizontal flip;
    see the NYUv2 loader). Pixels with depth <= 0 (or next to one)
    are all-zero (invalid).
    """
    z = np.asarray(depth, dtype=np.float64)
    h, w = z.shape
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    pts = np.stack([(u - cx) * z / fx, (v - cy) * z / fy, z], axis=-1)
    if sigma > 0:  # normalised convolution: invalid (z <= 0) points do not pull their neighbours
        _need_scipy()
        weight = gaussian_filter((z > 0).astype(np.float64), sigma=sigma, mode="nearest")[..., None]
        pts = gaussian_filter(pts * (z > 0)[..., None], sigma=(sigma, sigma, 0), mode="nearest")
        pts = pts / np.maximum(weight, 1e-12)
    d_rows, d_cols = np.gradient(pts, axis=(0, 1))
    n = np.cross(d_rows, d_cols)
    n *= np.where((n * pts).sum(-1, keepdims=True) > 0, -1.0, 1.0)
    length = np.linalg.norm(n, axis=-1, keepdims=True)
    ok = z > 0
    ok[1:] &= z[:-1] > 0
    ok[:-1] &= z[1:] > 0
    ok[:, 1:] &= z[:, :-1] > 0
    ok[:, :-1] &= z[:, 1:] > 0
    ok &= length[..., 0] > 1e-12
    n = np.where(ok[..., None], n / np.maximum(length, 1e-12), 0.0)
    return n.astype(np.float32)


class LabelledMat:
    """Frames of nyu_depth_v2_labeled.mat: v7.3 read lazily via h5py, v5 loaded via scipy."""

    def __init__(self, path):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(
                f"{self.path}: not found; pass --mat <nyu_depth_v2_labeled.mat> from the NYU Depth V2 site"
            )
        _need_scipy()
        if _is_hdf5(self.path):
            import h5py

            self._h5 = h5py.File(self.path, "r")
            self._arrays = {k: self._h5[k] for k in ("images", "depths", "labels") if k in self._h5}
            self.n = self._arrays["images"].shape[0] if "images" in self._arrays else 0
        else:
            self._h5 = None
            self._arrays = sio.loadmat(self.path, variable_names=["images", "depths", "labels"])
            self.n = self._arrays["images"].shape[-1] if "images" in self._arrays else 0
        missing = [k for k in ("images", "depths", "labels") if k not in self._arrays]
        if missing:
            raise KeyError(f"{self.path}: fields {missing} missing; pass the official labelled .mat")

    def __len__(self) -> int:
        return self.n

    def frame(self, i: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Frame i (0-based): rgb (H, W, 3) uint8, depth (H, W) metres, labels (H, W) raw ids."""
        a = self._arrays
        if self._h5 is not None:  # MATLAB stores column-major: HDF5 axes are reversed
            return (np.asarray(a["images"][i]).transpose(2, 1, 0), np.asarray(a["depths"][i]).T,
                    np.asarray(a["labels"][i]).T)
        return a["images"][..., i], a["depths"][..., i], a["labels"][..., i]

    def close(self) -> None:
        if self._h5 is not None:
            self._h5.close()


def _is_hdf5(path: Path) -> bool:
    with open(path, "rb") as f:
        header = f.read(128)
    if b"MATLAB 7.3" not in header and not header.startswith(b"\x89HDF"):
        return False
    try:
        import h5py  # noqa: F401
    except ImportError as e:
        raise ImportError(f"{path} is a MATLAB v7.3 (HDF5) file: it needs h5py (pip install 'lhl[convert]')") from e
    return True


def load_splits(path, n_frames: int) -> Dict[str, np.ndarray]:
    """splits.mat -> {"train": 0-based indices, "val": 0-based indices}, checked for overlap and range."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found; pass --splits <splits.mat> of the NYU Depth V2 release")
    if _is_hdf5(path):
        import h5py

        with h5py.File(path, "r") as f:
            raw = {k: np.asarray(f[k]) for k in ("trainNdxs", "testNdxs") if k in f}
    else:
        _need_scipy()
        raw = sio.loadmat(path, variable_names=["trainNdxs", "testNdxs"])
    if "trainNdxs" not in raw or "testNdxs" not in raw:
        raise KeyError(f"{path}: fields trainNdxs / testNdxs missing; pass the official splits.mat")
    out = {s: np.sort(np.asarray(raw[k]).astype(np.int64).ravel() - 1) for s, k in
           (("train", "trainNdxs"), ("val", "testNdxs"))}
    for s, idx in out.items():
        if idx.size == 0 or idx.min() < 0 or idx.max() >= n_frames:
            raise ValueError(f"{path}: {s} indices fall outside 1..{n_frames} (the .mat's frame count)")
    if np.intersect1d(out["train"], out["val"]).size:
        raise ValueError(f"{path}: trainNdxs and testNdxs overlap")
    return out


def convert_frame(rgb, depth, labels, size=SIZE, normals: str = "depth", source: str = "labels"):
    """One full-resolution frame -> MTAN arrays {image, label, depth, normal} at `size`."""
    depth = np.nan_to_num(np.asarray(depth, dtype=np.float32), nan=0.0).clip(min=0.0)
    if normals == "depth":
        normal = resize_nearest(normals_from_depth(depth), size)
    elif normals == "zeros":
        normal = np.zeros((*size, 3), dtype=np.float32)
    else:
        raise ValueError(f"normals='{normals}' is unknown; use 'depth' or 'zeros'")
    return {
        "image": resize_image(rgb, size),
        "label": label13_to_mtan(map_labels13(labels, source), size),
        "depth": resize_nearest(depth, size)[..., None].astype(np.float32),
        "normal": normal.astype(np.float32),
    }


def convert(mat_path, splits_path, out, size=SIZE, normals: str = "depth") -> Dict[str, int]:
    """Convert the labelled release; returns {mtan_split: frame count}.

    Refuses split folders of `out` that already hold files (see `refuse_stale`).
    """
    refuse_stale(out, ("train", "val"))
    mat = LabelledMat(mat_path)
    try:
        splits = load_splits(splits_path, len(mat))
        for split, indices in splits.items():
            for i, k in enumerate(indices.tolist()):
                arrays = convert_frame(*mat.frame(k), size=size, normals=normals,
                                       source=f"{mat.path} frame {k + 1}")
                for folder, arr in arrays.items():
                    save_npy(Path(out) / split / folder / f"{i}.npy", arr)
    finally:
        mat.close()
    return {s: len(v) for s, v in splits.items()}


def cli(argv=None) -> int:
    """`lhl data convert-nyuv2 --mat FILE --splits FILE --out DIR [--normals depth|zeros]`."""
    ap = argparse.ArgumentParser(prog="lhl data convert-nyuv2", description=__doc__.split("\n")[0])
    ap.add_argument("--mat", required=True, help="nyu_depth_v2_labeled.mat")
    ap.add_argument("--splits", required=True, help="splits.mat (trainNdxs / testNdxs)")
    ap.add_argument("--out", required=True,
                    help="output folder (MTAN layout), e.g. $LHL_DATA/nyuv2; its split folders must be new or empty")
    ap.add_argument("--normals", choices=("depth", "zeros"), default="depth",
                    help="compute normals from depth (default) or write zeros (= invalid)")
    args = ap.parse_args(argv)
    _need_scipy()
    try:
        refuse_stale(args.out, ("train", "val"))
    except FileExistsError as err:
        ap.error(str(err))
    counts = convert(args.mat, args.splits, args.out, normals=args.normals)
    for split, n in counts.items():
        print(f"nyuv2: wrote {n} frames to {Path(args.out) / split}")
    return 0
