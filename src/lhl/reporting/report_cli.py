"""`lhl report RUN [--ref RUN] [--json OUT]`: one run's final metrics, Δ and forgetting."""
from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from lhl.core.errors import USER_ERRORS
from lhl.core.io import atomic_write_json
from lhl.reporting.render import report_markdown
from lhl.runs.results import PathLike, Results
from lhl.reporting.ranks import backward_transfer, delta_after_phases
from lhl.reporting.scores import report_data as _scores


def report_data(results: Results, reference: Optional[Results] = None) -> dict:
    """`scores.report_data` plus the paper's relative backward transfer and Δ after every phase."""
    data = _scores(results, reference)
    data["backward_transfer"] = backward_transfer(results)
    if reference is not None:
        data["delta_after_phases"] = delta_after_phases(results, reference)
    return data


def report(run_dir: PathLike, ref_dir: Optional[PathLike] = None) -> str:
    """Markdown report of one run: final metrics, Δ vs `ref_dir` if given, forgetting."""
    results = Results.load(run_dir)
    reference = Results.load(ref_dir) if ref_dir is not None else None
    return report_markdown(results, report_data(results, reference), str(ref_dir) if ref_dir else None)


def cli(argv: Optional[Sequence[str]] = None) -> int:
    """Print the report, optionally write its data as JSON; 2 on a missing or malformed file."""
    parser = argparse.ArgumentParser(prog="lhl report", description="Report a run's results (final, Δ, forgetting).")
    parser.add_argument("run", help="run folder (or its results.json)")
    parser.add_argument("--ref", default=None, help="reference run folder for Δ (single-task, joint, ...)")
    parser.add_argument("--json", default=None, dest="json_out", help="also write the numbers to this JSON file")
    args = parser.parse_args(argv)
    try:
        results = Results.load(args.run)
        reference = Results.load(args.ref) if args.ref else None
        data = report_data(results, reference)
    except USER_ERRORS as e:
        print(f"lhl report: {e}", file=sys.stderr)
        return 2
    print(report_markdown(results, data, args.ref))
    if args.json_out:
        atomic_write_json(args.json_out, data)
    return 0
