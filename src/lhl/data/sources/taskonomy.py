"""Taskonomy from its per-building folders: `{root}/{building}/{domain}/point_X_view_Y_domain_D.png`.

Files are matched across domains by their `point_X_view_Y` stem; `rgb` lists the samples.
Decoding (Taskonomy release conventions):
  depth     `depth_zbuffer` uint16, units of 1/512 m (max 128 m); 65535 = invalid -> 0.
  normal    `normal` RGB, n = v / 255 * 2 - 1, channels (x, y, z) as stored, in the 2D3DS /
            omnidata camera frame: +X right, +Y down, +Z toward the viewer (a surface facing the
            camera is (0, 0, 1); stated by the omnidata maintainer, EPFL-VILAB/omnidata issue #13).
            So a horizontal flip negates channel 0 (`NORMAL_X_CHANNEL`). Not NYUv2's convention:
            the two datasets' normals are not interchangeable. Pixels whose decoded vector is
            shorter than 0.5 (the 127/128 "no data" grey) or whose depth_zbuffer is invalid (when
            that file exists) -> all-zero (invalid).
  semantic  `segment_semantic` uint8: 0 = unlabelled (-> -1, ignored), 1 = background,
            2..17 = the COCO indoor classes distilled from FCIS; stored value - 1, so
            `semantic_classes` (default 17) classes 0..16, as in Standley et al.'s Taskonomy
            training code (18 logits with ignore_index=0). Values above `semantic_classes` raise.
  edge      `edge_texture` uint16 -> [0, 1] (v / 65535; 8-bit files v / 255).
  keypoints `keypoints2d` uint16 -> [0, 1] likewise.
Options: `buildings: {train: [...], val: [...]}` or `split_file` (the release's CSV with columns
`id,train,val,test` of 0/1 flags, e.g. `train_val_test_tiny.csv`; a relative path is taken
inside `root`); `size: [H, W]` resizes (bilinear image and scalar maps, nearest labels);
`drop_incomplete: true` skips samples lacking a domain instead of failing; `index_tasks` (set by
the data module to the whole sequence's tasks) decides which samples are complete, so that every
phase, whatever labels it loads, lists the same samples.
"""
from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from lhl.core.errors import MissingInput
from lhl.data.checks import found_near
from lhl.data.validate import BadInput
from lhl.data.convert import read_png
from lhl.data.sources.nyuv2 import data_home
from lhl.core.registry import DATASETS

DOMAINS = {
    "semantic": "segment_semantic",
    "depth": "depth_zbuffer",
    "normal": "normal",
    "edge": "edge_texture",
    "keypoints": "keypoints2d",
    "reshading": "reshading",  # shading under one light: 8-bit grey -> scalar [0, 1]
    "curvature": "principal_curvature",  # (k1, k2) in the first two 8-bit channels -> 2-channel scalar
    "occlusion": "edge_occlusion",  # uint16 -> scalar [0, 1]
    "keypoints3d": "keypoints3d",  # uint16 -> scalar [0, 1]
    "depth_euclidean": "depth_euclidean",  # as depth_zbuffer: 1/512 m, 65535 invalid -> a depth task
}
#: task -> (task type, channels) beyond semantic; the taskonomy10 sequence uses all ten
KINDS = {"depth": ("depth", 1), "normal": ("normal", 3), "edge": ("scalar", 1), "keypoints": ("scalar", 1),
         "reshading": ("scalar", 1), "curvature": ("scalar", 2), "occlusion": ("scalar", 1),
         "keypoints3d": ("scalar", 1), "depth_euclidean": ("depth", 1)}
DEPTH_UNITS_PER_METRE = 512.0
DEPTH_INVALID = 65535
SEMANTIC_CLASSES = 17
_STEM = re.compile(r"^(point_\d+_view_\d+)_domain_.+\.png$")
SPLIT_FIX = (
    "put the release's split CSV there (columns id,train,val,test; e.g. train_val_test_tiny.csv from the "
    "Taskonomy download's splits) or list the buildings with data.options.buildings={train: [...], val: [...]}"
)


def obtain(domains: Sequence[str]) -> str:
    """One line on getting the data: the official download of the domains needed."""
    return (
        "download the split's buildings from the official Taskonomy release (github.com/StanfordVL/taskonomy, "
        f"data/) with the domains {', '.join(['rgb', *domains])}, unpacked as <root>/<building>/<domain>/, "
        "and its split CSV (e.g. train_val_test_tiny.csv) into <root>"
    )


def decode_depth(v: np.ndarray) -> np.ndarray:
    """depth_zbuffer values -> metres (float32), 65535 -> 0 (invalid)."""
    v = np.asarray(v)
    v = v[..., 0] if v.ndim == 3 else v
    return np.where(v == DEPTH_INVALID, 0.0, v / DEPTH_UNITS_PER_METRE).astype(np.float32)


def decode_normal(v: np.ndarray, valid: Optional[np.ndarray] = None) -> np.ndarray:
    """normal RGB (H, W, 3) uint8 -> (H, W, 3) float32 n = v/255*2-1, invalid pixels all-zero."""
    n = np.asarray(v)[..., :3].astype(np.float32) / 255.0 * 2.0 - 1.0
    ok = np.linalg.norm(n, axis=-1) >= 0.5
    if valid is not None:
        ok &= valid
    return np.where(ok[..., None], n, 0.0).astype(np.float32)


def decode_semantic(v: np.ndarray, classes: int = SEMANTIC_CLASSES, source: str = "segment_semantic") -> np.ndarray:
    """segment_semantic ids -> int64 labels value - 1 (0 -> -1 ignore)."""
    v = np.asarray(v)
    v = v[..., 0] if v.ndim == 3 else v
    lab = v.astype(np.int64) - 1
    if lab.size and lab.max() >= classes:
        raise BadInput(
            f"{source}: field 'semantic': class id {lab.max() + 1} exceeds semantic_classes={classes}; "
            f"fix: raise data.options.semantic_classes to at least {lab.max() + 1}, or correct the file"
        )
    return lab


def decode_scalar(v: np.ndarray, bits: int, channels: int = 1) -> np.ndarray:
    """edge / keypoint / reshading / curvature values -> float32 in [0, 1] by the file's bit depth;
    `channels` > 1 keeps the first channels as (H, W, channels)."""
    v = np.asarray(v)
    if channels > 1:
        v = v[..., :channels] if v.ndim == 3 else np.repeat(v[..., None], channels, axis=-1)
    else:
        v = v[..., 0] if v.ndim == 3 else v
    return (v.astype(np.float32) / float(2**bits - 1)).astype(np.float32)


def buildings_for_split(split: str, buildings: Optional[Mapping] = None, split_file=None, root=None) -> List[str]:
    """The building names of one split, from the `buildings` option or the release's split CSV.

    A relative `split_file` is taken inside `root` (the data root) when one is given.
    """
    if buildings is not None:
        if split not in buildings:
            raise KeyError(
                f"taskonomy: data.options.buildings has no '{split}' list; give {{{split}: [building, ...]}}"
            )
        return [str(b) for b in buildings[split]]
    if split_file is None:
        raise BadInput(
            "taskonomy: choose buildings per split: set data.options.buildings={train: [...], val: [...]} "
            "or data.options.split_file=<train_val_test CSV of the release, relative to data.root>"
        )
    path = Path(split_file)
    if root is not None and not path.is_absolute():
        path = Path(root) / path
    if not path.is_file():
        raise MissingInput(
            f"taskonomy: split file {path} not found (data.options.split_file={str(split_file)!r}, relative "
            f"paths are inside data.root); {found_near(path)}; fix: {SPLIT_FIX}"
        )
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or "id" not in rows[0] or split not in rows[0]:
        raise BadInput(
            f"{path}: needs a header with columns 'id' and '{split}' (0/1 flags), found "
            f"{list(rows[0]) if rows else 'no rows'}; fix: {SPLIT_FIX}"
        )
    return [r["id"].strip() for r in rows if r[split].strip() in ("1", "1.0", "True", "true")]


def _stems(folder: Path) -> Dict[str, Path]:
    """`point_X_view_Y` -> file, for every matching PNG of one domain folder."""
    out = {}
    for p in folder.glob("*.png"):
        m = _STEM.match(p.name)
        if m:
            out[m.group(1)] = p
    return out


def _resize(x: torch.Tensor, size, mode: str) -> torch.Tensor:
    """Resize a [C, H, W] tensor; labels use nearest-exact, continuous maps bilinear (antialiased)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    if mode == "nearest":
        return F.interpolate(x[None].float(), size=tuple(size), mode="nearest-exact")[0].to(x.dtype)
    return F.interpolate(x[None], size=tuple(size), mode="bilinear", align_corners=False, antialias=True)[0]


@DATASETS.register("taskonomy")
class Taskonomy(Dataset):
    """Taskonomy samples {"image", "index", <task>...}; see the module docstring for the formats."""

    #: normals are stored (x, y, z), +X right (omnidata issue #13): a flip negates channel 0
    NORMAL_X_CHANNEL = 0

    def __init__(
        self,
        root=None,
        split: str = "train",
        tasks: Sequence[str] = ("semantic", "depth", "normal"),
        buildings: Optional[Mapping] = None,
        split_file=None,
        size: Optional[Sequence[int]] = None,
        semantic_classes: int = SEMANTIC_CLASSES,
        drop_incomplete: bool = False,
        index_tasks: Optional[Sequence[str]] = None,
    ):
        self.root = Path(root) if root is not None else data_home() / "taskonomy"
        self.tasks = list(tasks)
        # completeness is decided over these, so every phase of a sequence lists the same samples
        self.index_tasks = list(dict.fromkeys([*self.tasks, *(index_tasks or [])]))
        unknown = [t for t in self.index_tasks if t not in DOMAINS]
        if unknown:
            raise BadInput(f"taskonomy: unknown task(s) {unknown} in the tasks list; choose from {sorted(DOMAINS)}")
        domains = [DOMAINS[t] for t in self.index_tasks]
        get = obtain(domains)
        if not self.root.is_dir():
            raise MissingInput(
                f"taskonomy: folder {self.root} not found (config key data.root); {found_near(self.root)}; "
                "fix: set data.root=<folder holding one folder per building> or LHL_DATA=<parent of taskonomy/>; "
                f"get the data: {get}"
            )
        self.size = tuple(int(s) for s in size) if size is not None else None
        self.semantic_classes = int(semantic_classes)
        self.samples: List[Tuple[str, str]] = []
        self.files: Dict[str, Dict[Tuple[str, str], Path]] = {d: {} for d in ("rgb", *DOMAINS.values())}
        missing: List[Path] = []
        split_buildings = buildings_for_split(split, buildings, split_file, root=self.root)
        for b in split_buildings:
            rgb_dir = self.root / b / "rgb"
            if not rgb_dir.is_dir():
                raise MissingInput(
                    f"taskonomy: {rgb_dir} not found (building '{b}' of split '{split}'); {found_near(rgb_dir)}; "
                    f"fix: download that building or remove it from the split; get the data: {get}"
                )
            found = {d: _stems(self.root / b / d) for d in self.files}
            for stem in sorted(found["rgb"]):
                lacking = [d for d in domains if stem not in found[d]]
                if lacking:
                    missing.append(self.root / b / lacking[0] / f"{stem}_domain_{lacking[0]}.png")
                    if drop_incomplete:
                        continue
                self.samples.append((b, stem))
                for d, paths in found.items():
                    if stem in paths:
                        self.files[d][(b, stem)] = paths[stem]
        if missing and not drop_incomplete:
            raise MissingInput(
                f"taskonomy: {len(missing)} sample(s) lack a domain of tasks {self.index_tasks}, e.g. {missing[0]} "
                f"({found_near(missing[0])}); fix: download the missing domains, drop the task, or set "
                f"data.options.drop_incomplete=true; get the data: {get}"
            )
        if not self.samples:
            where = self.root / split_buildings[0] / "rgb" if split_buildings else self.root
            raise MissingInput(
                f"taskonomy: no complete point_*_view_*_domain_rgb.png samples for split '{split}' "
                f"({len(split_buildings)} building(s)) under {self.root}; {found_near(where)}; fix: put the rgb "
                f"files of the split's buildings there, or name other buildings (data.options); get the data: {get}"
            )

    def __len__(self) -> int:
        return len(self.samples)

    def _depth_valid(self, key) -> Optional[np.ndarray]:
        path = self.files["depth_zbuffer"].get(key)
        return None if path is None else read_png(path) != DEPTH_INVALID

    def _load(self, task: str, key) -> torch.Tensor:
        path = self.files[DOMAINS[task]][key]
        v = read_png(path)
        bits = 8 if v.dtype == np.uint8 else 16  # PIL reads 16-bit grey as mode I;16 or I
        if task == "semantic":
            lab = torch.from_numpy(decode_semantic(v, self.semantic_classes, str(path)))
            return _resize(lab[None], self.size, "nearest")[0] if self.size else lab
        kind, channels = KINDS[task]
        if kind == "depth":
            x, mode = torch.from_numpy(decode_depth(v))[None], "nearest"
        elif task == "normal":
            valid = self._depth_valid(key)
            valid = valid[..., 0] if valid is not None and valid.ndim == 3 else valid
            x, mode = torch.from_numpy(decode_normal(v, valid)).permute(2, 0, 1).contiguous(), "nearest"
        elif channels > 1:
            x, mode = torch.from_numpy(decode_scalar(v, bits, channels)).permute(2, 0, 1).contiguous(), "bilinear"
        else:
            x, mode = torch.from_numpy(decode_scalar(v, bits))[None], "bilinear"
        return _resize(x, self.size, mode) if self.size else x

    def __getitem__(self, item: int) -> dict:
        key = self.samples[item]
        rgb = read_png(self.files["rgb"][key])
        image = torch.from_numpy(rgb[..., :3].astype(np.float32) / 255.0).permute(2, 0, 1).contiguous()
        sample = {"image": _resize(image, self.size, "bilinear").clamp(0, 1) if self.size else image, "index": item}
        for task in self.tasks:
            sample[task] = self._load(task, key)
            if not self.size and sample[task].shape[-2:] != image.shape[-2:]:
                raise BadInput(
                    f"taskonomy: {self.files[DOMAINS[task]][key]}: field '{task}': size "
                    f"{tuple(sample[task].shape[-2:])} differs from the image's {tuple(image.shape[-2:])} "
                    f"({self.files['rgb'][key]}); fix: re-download that file, or set data.options.size=[H, W] "
                    "to resize every domain")
        return sample

    @classmethod
    def task_info(cls, semantic_classes: int = SEMANTIC_CLASSES, **options) -> dict:
        return {"semantic": ("semantic", int(semantic_classes)), **KINDS}
