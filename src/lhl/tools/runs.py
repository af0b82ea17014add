"""The status of run folders with the engine at hand: a run that has not recorded its plan yet
(no results.json) gets its phase count by building its method (`lhl.runs.status` alone does not)."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

from omegaconf import DictConfig

from lhl.runs.status import RunStatus
from lhl.runs.status import find_runs as _find_runs
from lhl.runs.status import run_status as _run_status


def plan_length(cfg: DictConfig) -> Optional[int]:
    """The number of phases `cfg`'s method plans (None when the config no longer builds)."""
    from lhl.engine.build import build_method, build_plan, build_specs

    try:
        specs = build_specs(cfg)
        return len(build_plan(build_method(cfg, specs), specs))
    except Exception:  # a folder of an older lhl whose config no longer resolves
        return None


def run_status(folder: Path) -> Optional[RunStatus]:
    return _run_status(folder, plan_length)


def find_runs(out_dir: Path) -> List[RunStatus]:
    return _find_runs(out_dir, plan_length)
