"""The mechanism figure and table of the loss-term diagnostics (`diag.every`), from finished runs.

For each labelled group of run folders (one method, several seeds), per old task: the worst-decile
share and the edge-keep fraction of its distillation term over the training steps (mean over the
seeds at each logged step), and a table of their per-phase means (mean ± std over the seeds) with
the term's gradient cosine against the new task's. It reads the CSV logs that `lhl run` writes
(`<run>/logs/phase_<i>/metrics.csv`, the `diag/<term>/...` columns).

    python -m lhl.reporting.diagnosis --out FIG.png [--table TABLE.md] LABEL=GLOB [LABEL=GLOB ...]
"""
from __future__ import annotations

import argparse
import csv
import glob
import math
import statistics
import sys
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from matplotlib.figure import Figure

from lhl.core.io import atomic_savefig, atomic_write_text

#: the per-term values read, in the table's order
VALUES = ("worst_decile_share", "edge_keep", "cos_new", "grad_norm")
#: the CSV log of one phase inside a run folder (written by Lightning's CSVLogger)
PHASE_LOGS = "logs/phase_*/metrics.csv"

#: {(old task, value): {phase: [(step_global, value), ...]}} of one run
Series = Dict[Tuple[str, str], Dict[int, List[Tuple[float, float]]]]


def read_run(run_dir: Path) -> Series:
    """The `diag/<prefix>/<task>/<value>` columns of a run's phase logs (distillation terms only:
    a term named `<prefix>/<task>`)."""
    out: Series = defaultdict(lambda: defaultdict(list))
    for path in sorted(Path(run_dir).glob(PHASE_LOGS)):
        for row in csv.DictReader(path.open()):
            phase, step = row.get("phase"), row.get("step_global")
            for key, value in row.items():
                parts = key.split("/")
                if len(parts) != 4 or parts[0] != "diag" or parts[3] not in VALUES or not value or not phase:
                    continue
                out[(parts[2], parts[3])][int(float(phase))].append((float(step or "nan"), float(value)))
    return out


def _mean_std(values: Sequence[float]) -> str:
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return "–"
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {std:.3f}"


def table(groups: Dict[str, List[Series]]) -> str:
    """Markdown: per label, phase and old task, each value's per-run phase mean, mean ± std over runs."""
    head = "| runs | phase | old task | " + " | ".join(VALUES) + " |\n|---|---|---|" + "---|" * len(VALUES) + "\n"
    lines = []
    for label, runs in groups.items():
        keys = sorted({(phase, task) for run in runs for (task, _), phases in run.items() for phase in phases})
        for phase, task in keys:
            cells = []
            for value in VALUES:
                per_run = [statistics.mean(v for _, v in run[(task, value)][phase])
                           for run in runs if run.get((task, value), {}).get(phase)]
                cells.append(_mean_std(per_run))
            lines.append(f"| {label} (n={len(runs)}) | {phase + 1} | {task} | " + " | ".join(cells) + " |")
    return head + "\n".join(lines) + "\n"


def figure(groups: Dict[str, List[Series]], path: Path) -> Path:
    """Rows: worst-decile share, edge-keep fraction; columns: old tasks; one line per label (mean over
    its runs at each logged step); the plain mean's share 0.1 dashed."""
    tasks = sorted({task for runs in groups.values() for run in runs for (task, _) in run})
    rows = ("worst_decile_share", "edge_keep")
    fig = Figure(figsize=(4.2 * max(1, len(tasks)), 6.0))
    for r, value in enumerate(rows):
        for c, task in enumerate(tasks):
            ax = fig.add_subplot(len(rows), max(1, len(tasks)), r * max(1, len(tasks)) + c + 1)
            for i, (label, runs) in enumerate(groups.items()):
                by_step: Dict[float, List[float]] = defaultdict(list)
                for run in runs:
                    for points in run.get((task, value), {}).values():
                        for step, v in points:
                            by_step[step].append(v)
                if by_step:
                    steps = sorted(by_step)
                    ax.plot(steps, [statistics.mean(by_step[s]) for s in steps], color=f"C{i}", lw=1, label=label)
            if value == "worst_decile_share":
                ax.axhline(0.1, color="grey", ls="--", lw=0.8)
            ax.set_title(f"{task}: {value.replace('_', ' ')}", fontsize=9)
            ax.set_xlabel("training step (all phases)", fontsize=8)
            ax.tick_params(labelsize=7)
            if r == 0 and c == 0:
                ax.legend(fontsize=7)
    fig.tight_layout()
    return atomic_savefig(fig, path)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lhl.reporting.diagnosis", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="the figure (.png)")
    parser.add_argument("--table", help="also write the per-phase table (markdown) here; it is printed anyway")
    parser.add_argument("groups", nargs="+", help='LABEL=GLOB of run folders, e.g. "had=runs/synthetic_s1/had/default/seed*"')
    args = parser.parse_args(argv)
    groups: Dict[str, List[Series]] = {}
    for spec in args.groups:
        label, _, pattern = spec.partition("=")
        runs = [read_run(Path(p)) for p in sorted(glob.glob(pattern)) if Path(p).is_dir()]
        runs = [r for r in runs if r]
        if not runs:
            parser.error(f"{spec}: no run folder with diag/ columns (run with diag.every=N)")
        groups[label] = runs
    text = table(groups)
    print(text, end="")
    if args.table:
        atomic_write_text(Path(args.table), text)
    print(f"figure: {figure(groups, Path(args.out))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
