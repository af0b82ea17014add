"""`lhl report RUN [ref=RUN] [json=OUT]`: a run's final metrics, Δ against a reference and
forgetting (`lhl.reporting.report`); `--ref` / `--json` are the same options."""
from __future__ import annotations

import argparse
from typing import List

from lhl.cli.common import flags
from lhl.core.io import atomic_write_json
from lhl.reporting.render import report_markdown
from lhl.reporting.report import report_data
from lhl.runs.results import Results


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lhl report", description="Report a run's results (final, Δ, forgetting).")
    p.add_argument("run", help="run folder (or its results.json)")
    p.add_argument("--ref", default=None, help="ref=RUN: reference run folder for Δ (single-task, joint, ...)")
    p.add_argument("--json", default=None, dest="json_out", help="json=OUT: also write the numbers to this JSON file")
    return p


def cli(argv: List[str]) -> int:
    args = parser().parse_args(flags(argv, ("ref", "json")))
    results = Results.load(args.run)
    reference = Results.load(args.ref) if args.ref else None
    data = report_data(results, reference)
    print(report_markdown(results, data, args.ref))
    if args.json_out:
        atomic_write_json(args.json_out, data)
    return 0
