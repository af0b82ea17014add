"""One run's report: final metrics, Δ against a reference run and forgetting (the command:
`lhl report`, `lhl.cli.report`)."""
from __future__ import annotations

from typing import Optional

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
