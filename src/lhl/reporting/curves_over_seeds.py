"""`lhl curves RUN... --short SHORT...`: the convergence check of `curves` over several seeds.

One seed's `reached` moves with the seed (the ratio of two runs, each a few percent noisy), so the
check takes several long runs, each paired with its seed's short run: per phase and task, `reached`
on every seed, its mean ± std and the 95 % Student-t interval of the mean; a phase counts as
converged when the mean reaches 0.9 (`make curves SEEDS="0 1 2 3 4"`).
"""
from __future__ import annotations

import statistics
from pathlib import Path
from typing import List, Mapping, Optional, Sequence

from lhl.core.errors import UsageError
from lhl.core.io import atomic_write_json, atomic_write_text
from lhl.reporting.curves import CONVERGED, PathLike, config_differences, fmt_or_dash, write_curves
from lhl.reporting.ranks import one_sample_test
from lhl.reporting.render import arrow, table
from lhl.runs.results import Results


def convergence_over_seeds(per_run: Sequence[Sequence[Mapping]]) -> List[dict]:
    """Per phase and trained task (in the first run's order), over the runs' `convergence`
    entries: `reached` per run, its mean, std, the 95 % Student-t interval of the mean
    (`ci95`, None below two runs) and `converged` (mean >= CONVERGED)."""
    keyed: dict = {}
    for entries in per_run:
        for e in entries:
            keyed.setdefault((e["phase"], e["task"]), dict(e, values=[]))["values"].append(e["reached"])
    out = []
    for (phase, task), e in keyed.items():
        values = [v for v in e["values"] if v is not None]
        stats = one_sample_test(values)
        std = statistics.stdev(values) if len(values) > 1 else None
        out.append(dict(phase=phase, task=task, metric=e["metric"], higher_is_better=e["higher_is_better"],
                        reached=e["values"], n=len(values), mean=stats["mean"], std=std, ci95=stats["ci95"],
                        converged=None if stats["mean"] is None else stats["mean"] >= CONVERGED))
    return out


def seeds_markdown(summary: Sequence[Mapping], seeds: Sequence, title: str = "") -> str:
    """The convergence table over seeds as Markdown."""
    head = ["phase", "task", "metric", "reached per seed (" + ", ".join(str(s) for s in seeds) + ")",
            "mean ± std", "95 % interval", f"mean ≥ {CONVERGED}"]
    rows = [[str(e["phase"]), e["task"], e["metric"] + arrow(e["higher_is_better"]),
             " / ".join(fmt_or_dash(v, ".3f") for v in e["reached"]),
             f"{fmt_or_dash(e['mean'], '.3f')} ± {fmt_or_dash(e['std'], '.3f')}",
             "—" if e["ci95"] is None else f"[{e['ci95'][0]:.3f}, {e['ci95'][1]:.3f}]",
             "—" if e["converged"] is None else ("yes" if e["converged"] else "no")] for e in summary]
    lines = ([f"# Convergence over seeds: {title}", ""] if title else []) + table(head, rows)
    return "\n".join(lines + ["", f"reached as in each run's table; the interval is that of the mean over seeds "
                               f"(Student's t); a phase counts as converged when the mean reaches {CONVERGED}."]) + "\n"


def write_seeds(runs: Sequence[PathLike], shorts: Optional[Sequence[PathLike]] = None,
                summary: Optional[PathLike] = None) -> tuple:
    """`write_curves` for every run (each paired with `shorts[i]`, which must have its seed), then
    the table over seeds: (summary entries, its markdown, the markdown's path or None). The runs
    must be one run on several seeds: the same settings but for the seed and where they ran."""
    runs = [Path(r) for r in runs]
    if shorts is not None and len(shorts) != len(runs):
        raise UsageError(f"--short: {len(shorts)} runs for {len(runs)} long runs; give one short run per long run")
    for other in runs[1:]:
        differ = config_differences(runs[0], other, ("run.seed",), f"{runs[0]}:")
        if differ:
            raise UsageError(f"{other}/config.yaml: the runs must be one run on several seeds; it differs in {differ}")
    per_run = [write_curves(r, None, None if shorts is None else shorts[i])[0] for i, r in enumerate(runs)]
    seeds = [Results.load(r).meta.get("seed", "?") for r in runs]
    if len(set(seeds)) < len(seeds):
        raise UsageError(f"the long runs repeat a seed ({seeds}); give each seed once")
    entries = convergence_over_seeds(per_run)
    md = seeds_markdown(entries, seeds, ", ".join(str(r) for r in runs))
    path = None
    if summary is not None:
        path = atomic_write_text(Path(summary), md)
        atomic_write_json(Path(summary).with_suffix(".json"), {"runs": [str(r) for r in runs], "seeds": seeds,
                                                                "short": [str(s) for s in shorts or []], "entries": entries})
    return entries, md, path
