"""The status of a lifelong run folder: its sequence, method preset, results-relevant overrides,
seed and the phases completed out of its plan (what `lhl runs` lists and `lhl compare` checks
before reading a run)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

import yaml
from omegaconf import DictConfig, OmegaConf

from lhl.config import Config
from lhl.runs.folder import CONFIG_YAML, RunFolder

#: the number of phases of a config's plan, for a run whose results.json does not record it yet
PlanLength = Callable[[DictConfig], Optional[int]]


@dataclass
class RunStatus:
    folder: Path
    sequence: str
    method: str
    seed: int
    overrides: Dict[str, object] = field(default_factory=dict)
    done: List[int] = field(default_factory=list)
    total: Optional[int] = None  # phases in the run's plan (None: unknown, or the config no longer builds)

    @property
    def finished(self) -> bool:
        return self.total is not None and len(self.done) >= self.total


def run_status(folder: Path, plan_length: Optional[PlanLength] = None) -> Optional[RunStatus]:
    """What a run folder holds, or None when it is no lifelong run folder (no config.yaml). The
    plan's length comes from results.json (one backbone per planned phase), else `plan_length`."""
    where = RunFolder(Path(folder))
    if not where.config.is_file():
        return None
    raw = OmegaConf.load(where.config)
    if "sequence" not in raw or "method" not in raw:
        return None
    cfg = OmegaConf.merge(OmegaConf.structured(Config), raw)
    status = RunStatus(where.root, str(cfg.sequence.name), str(cfg.run.method_tag or cfg.method.name), int(cfg.run.seed))
    if where.overrides.is_file():
        status.overrides = yaml.safe_load(where.overrides.read_text()) or {}
    elif cfg.run.name:
        status.overrides = {"run.name": str(cfg.run.name)}
    recorded = json.loads(where.results_json.read_text()) if where.results_json.is_file() else {}
    status.done = sorted(int(p["phase"]) for p in recorded.get("phases", []))
    planned = recorded.get("meta", {}).get("architectures")
    status.total = len(planned) if planned else (plan_length(cfg) if plan_length is not None else None)
    return status


def find_runs(out_dir: Path, plan_length: Optional[PlanLength] = None) -> List[RunStatus]:
    """Every lifelong run folder under `out_dir`, in path order."""
    found = (run_status(p.parent, plan_length) for p in sorted(Path(out_dir).rglob(CONFIG_YAML)))
    return [s for s in found if s is not None]
