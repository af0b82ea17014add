"""`lhl curves RUN... [short=RUN...] [out=FILE] [summary=FILE]` (or `--short`, `--out`, `--summary`):
learning curves within each phase and how much of a phase's result half its epochs reach
(`lhl.reporting.curves`)."""
from __future__ import annotations

import argparse
from typing import Optional, Sequence

from lhl.cli.common import flags
from lhl.core.errors import UsageError
from lhl.reporting.curves import write_curves
from lhl.reporting.curves_over_seeds import write_seeds


def cli(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="lhl curves", description=(
        "Learning curves of a run made with eval.every_n_epochs: each phase's trained task(s)' main "
        "metric against epoch, and how much of the last epoch's value half the epochs reach; over "
        "several seeds of one run, also the mean and 95 %% interval of that share."))
    parser.add_argument("run", nargs="+", help="run folder(s) (holding curves.json and results.json); several: one run on several seeds")
    parser.add_argument("--out", default=None, help="the plot of a single run (default <run>/curves.png; the table beside it, .md)")
    parser.add_argument("--short", nargs="+", default=None, help=(
        "the same run(s) with fewer epochs a phase (e.g. half), one per run and seed: value(E/2) is its value "
        "right after each phase instead of this run's at epoch E/2; required when train.lr_schedule anneals"))
    parser.add_argument("--summary", default=None, help="with several runs: write the table over seeds here (.md; a .json beside it)")
    args = parser.parse_args(flags(argv, ("out", "short", "summary")))
    if len(args.run) == 1 and args.summary is None:
        _, md, png, md_path = write_curves(args.run[0], args.out, args.short[0] if args.short else None)
        print(md + f"\nplot: {png}\ntable: {md_path}")
        return 0
    if args.out is not None:
        raise UsageError("--out names the plot of a single run; with several, each run's plot goes to its folder")
    _, md, path = write_seeds(args.run, args.short, args.summary)
    print(md + "\nper run: <run>/curves.md and curves.png" + (f"\ntable: {path}" if path else ""))
    return 0
