"""`lhl runs [OUT_DIR]`: the run folders under OUT_DIR (default runs/) with their sequence, method
preset, results-relevant overrides, seeds and completed phases; `run_status` is also what the
aggregate-only `lhl compare` checks before reading a run."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import yaml
from omegaconf import OmegaConf

from lhl.config import Config
from lhl.core.errors import MissingInput
from lhl.engine.run_identity import OVERRIDES_FILE

USAGE = """usage: lhl runs [OUT_DIR]

Lists the lifelong run folders under OUT_DIR (default: runs/), one line per configuration
(<seq>/<method>/<default | overrides hash>): its overrides and, per seed, the phases completed
out of the run's plan ("seed0 3/3").
"""


@dataclass
class RunStatus:
    folder: Path
    sequence: str
    method: str
    seed: int
    overrides: Dict[str, object] = field(default_factory=dict)
    done: List[int] = field(default_factory=list)
    total: Optional[int] = None  # phases in the run's plan (None: the config no longer builds)

    @property
    def finished(self) -> bool:
        return self.total is not None and len(self.done) >= self.total


def _plan_length(cfg) -> Optional[int]:
    from lhl.engine.build import build_method, build_plan, build_specs

    try:
        specs = build_specs(cfg)
        return len(build_plan(build_method(cfg, specs), specs))
    except Exception:  # a folder of an older lhl whose config no longer resolves
        return None


def run_status(folder: Path) -> Optional[RunStatus]:
    """What a run folder holds, or None when it is no lifelong run folder (no config.yaml)."""
    folder = Path(folder)
    if not (folder / "config.yaml").is_file():
        return None
    raw = OmegaConf.load(folder / "config.yaml")
    if "sequence" not in raw or "method" not in raw:
        return None
    cfg = OmegaConf.merge(OmegaConf.structured(Config), raw)
    status = RunStatus(folder, str(cfg.sequence.name), str(cfg.run.method_tag or cfg.method.name), int(cfg.run.seed))
    over = folder.parent / OVERRIDES_FILE
    if over.is_file():
        status.overrides = yaml.safe_load(over.read_text()) or {}
    elif cfg.run.name:
        status.overrides = {"run.name": str(cfg.run.name)}
    results = folder / "results.json"
    recorded = json.loads(results.read_text()) if results.is_file() else {}
    status.done = sorted(int(p["phase"]) for p in recorded.get("phases", []))
    planned = recorded.get("meta", {}).get("architectures")  # one backbone per phase of the plan
    # the plan as results.json records it; else built from the config (imports the methods: slower)
    status.total = len(planned) if planned else _plan_length(cfg)
    return status


def find_runs(out_dir: Path) -> List[RunStatus]:
    found = (run_status(p.parent) for p in sorted(Path(out_dir).rglob("config.yaml")))
    return [s for s in found if s is not None]


def _fmt_overrides(overrides: Dict[str, object]) -> str:
    return " ".join(f"{k}={v}" for k, v in overrides.items()) or "(preset defaults)"


def cli(argv: List[str]) -> int:
    if any(a in ("-h", "--help", "help") for a in argv):
        print(USAGE)
        return 0
    out_dir = Path(argv[0]) if argv else Path("runs")
    if not out_dir.is_dir():
        raise MissingInput(f"{out_dir}: no such folder (lhl runs OUT_DIR; default runs/)")
    groups: Dict[Path, List[RunStatus]] = {}
    for s in find_runs(out_dir):
        groups.setdefault(s.folder.parent if not s.overrides.get("run.name") else s.folder, []).append(s)
    if not groups:
        print(f"no run folders under {out_dir}")
        return 0
    for where, runs in groups.items():
        seeds = ", ".join(f"seed{s.seed} {len(s.done)}/{s.total if s.total is not None else '?'}" for s in runs)
        print(f"{where}\n    {runs[0].sequence} | {runs[0].method} | {_fmt_overrides(runs[0].overrides)} | {seeds}")
    return 0
