"""Rows of earlier `lhl distill` runs in a folder: kept when made with this config and teacher."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Dict

from omegaconf import DictConfig, OmegaConf

from lhl.distill.methods import kd_methods, label, needs_teacher
from lhl.runs.folder import RESULTS_JSON

#: keys that do not change a student's numbers (besides run.* and the teacher, identified by its checkpoint)
_NOT_IN_DIGEST = ("teacher_steps", "progress_bar", "log_every_n_steps")


def config_digest(cfg: DictConfig, kind: str) -> str:
    """Hash of the config a student row of `kind` depends on: data, student, training, seed and
    kd.<kind> (not the teacher section, identified by its checkpoint, nor run.kd / paths / logging)."""
    c = OmegaConf.to_container(cfg, resolve=True)
    relevant = {
        "seed": c["run"]["seed"], "student": c["student"], "kd": c["kd"].get(kind),
        "data": {k: v for k, v in c["data"].items() if k != "num_workers"},
        "train": {k: v for k, v in c["train"].items() if k not in _NOT_IN_DIGEST},
    }
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]


def earlier_rows(root: Path, cfg: DictConfig, teacher_id: str) -> Dict:
    """Student rows of earlier runs in `root` made with this config and teacher; others dropped (noted)."""
    path = root / RESULTS_JSON
    if not path.exists():
        return {}
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        print(f"{path}: unreadable ({err}); starting a new table")
        return {}
    kept = {}
    for kind in kd_methods():
        row = old.get(kind)
        if not isinstance(row, dict):
            continue
        why = None
        if row.get("config_hash") != config_digest(cfg, kind):
            why = "it was made with another config (data, student, train, run.seed or kd." + kind + ")"
        elif needs_teacher(kind) and row.get("teacher_id") != teacher_id:
            why = "it was made with another teacher checkpoint"
        if why:
            print(f"{path}: dropping the earlier '{label(kind)}' row: {why}")
        else:
            kept[kind] = row
    return kept
