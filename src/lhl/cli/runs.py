"""`lhl runs [OUT_DIR]`: the run folders under OUT_DIR (default runs/) with their sequence, method
preset, results-relevant overrides, seeds and completed phases."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List

from lhl.core.errors import MissingInput
from lhl.runs.status import RunStatus
from lhl.tools.runs import find_runs

USAGE = """usage: lhl runs [OUT_DIR]

Lists the lifelong run folders under OUT_DIR (default: runs/), one line per configuration
(<seq>/<method>/<default | overrides hash>): its overrides and, per seed, the phases completed
out of the run's plan ("seed0 3/3").
"""


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
