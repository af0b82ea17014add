"""Teacher checkpoints of `lhl distill`: the segmenter spec and weights, checked against the config
when reloaded, and identified by a digest of the file."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Dict, List, Optional

import torch
from omegaconf import DictConfig, OmegaConf

from lhl.core.io import atomic_torch_save
from lhl.distill.segmenters import Segmenter, build_segmenter


def model_spec(section: DictConfig, num_classes: int, img_size) -> Dict:
    """The build_segmenter kwargs of a teacher / student config section."""
    spec = OmegaConf.to_container(section, resolve=True)
    spec.update(num_classes=num_classes, img_size=[int(s) for s in img_size])
    return spec


def teacher_mismatch(stored: Dict, cfg: DictConfig, num_classes: int) -> List[str]:
    """The keys where a checkpoint's teacher spec differs from cfg.teacher (`pretrained` aside) or the data."""
    wanted = OmegaConf.to_container(cfg.teacher, resolve=True)
    diffs = [f"teacher.{k} (checkpoint {stored.get(k)!r}, config {v!r})"
             for k, v in wanted.items() if k != "pretrained" and stored.get(k) != v]
    if stored.get("num_classes") != num_classes:
        diffs.append(f"number of classes (checkpoint {stored.get('num_classes')}, "
                     f"data.name={cfg.data.name} has {num_classes})")
    return diffs


def load_teacher(path: Path, cfg: Optional[DictConfig] = None, num_classes: Optional[int] = None) -> Segmenter:
    """A segmenter saved by `save_model`, checked against cfg.teacher and `num_classes` when given."""
    # the blob holds only a spec of primitives and a state_dict of tensors: weights_only suffices
    blob = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(blob, dict) or "spec" not in blob or "state_dict" not in blob:
        raise ValueError(f"teacher checkpoint {path}: not a teacher checkpoint of `lhl distill`")
    if cfg is not None:
        diffs = teacher_mismatch(blob["spec"], cfg, num_classes)
        if diffs:
            raise ValueError(
                f"teacher checkpoint {path} does not match this run's config: {'; '.join(diffs)}. "
                f"Delete {path} to train a new teacher, or change run.name (another run folder) or "
                "run.teacher_ckpt (another teacher), or set the teacher.* keys to the checkpoint's"
            )
    # pretrained weights would be overwritten at once (and fetching them fails offline)
    model = build_segmenter(**{**blob["spec"], "pretrained": False}, key="teacher")
    model.load_state_dict(blob["state_dict"])
    return model


def save_model(model: Segmenter, spec: Dict, path: Path) -> None:
    """The spec and weights `load_teacher` reads back."""
    atomic_torch_save({"spec": spec, "state_dict": model.state_dict()}, path)


def file_digest(path: Path) -> str:
    """The first 16 hex digits of the file's SHA-256: the identity of a teacher checkpoint."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]
