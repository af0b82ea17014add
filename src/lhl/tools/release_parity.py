"""`lhl release-parity`: the side-by-side table of the HAD release and lhl run on the same data.

The release prints, after every phase, one line
``semantic results are ['mIoU', 'pixacc'] depth results are ['abs', 'rel'], normal results are
['mean', 'median', 'w11.25', 'w22.5', 'w30']`` (the within-t° values as fractions); the last such
line of a log is that seed's final row. lhl's final row is each run folder's `results.json`
(`scores.final_metrics`). For every metric of the NYUv2 protocol the table gives both sides' per-seed
values, mean ± sample std, the difference of the means with Welch's 95 % interval (the two runs
share no seed stream: the release seeds once, lhl per phase, so the seeds are not paired) and a
verdict: **agree** when the difference of the means is within the larger of the two seed standard
deviations (`within one seed std`), which is what "agree within the seeds' spread" means here. The
table and a JSON of every number are written atomically.
"""
from __future__ import annotations

import argparse
import ast
import re
from pathlib import Path
from typing import Dict, List, Sequence

from lhl.core.io import atomic_write_json, atomic_write_text
from lhl.reporting.ranks import welch_test
from lhl.reporting.aggregate import mean_std
from lhl.reporting.render import arrow, table
from lhl.runs.folder import RESULTS_JSON
from lhl.runs.results import Metrics, Results
from lhl.reporting.scores import final_metrics

#: the release's printout: task -> the metric names of its list, in order (lhl's names)
RELEASE_FIELDS = {
    "semantic": ("miou", "pixacc"),
    "depth": ("abs_err", "rel_err"),
    "normal": ("mean", "median", "within_11.25", "within_22.5", "within_30"),
}
#: the release prints within-t° fractions in [0, 1]; lhl reports percent
RELEASE_SCALE = {("normal", "within_11.25"): 100.0, ("normal", "within_22.5"): 100.0, ("normal", "within_30"): 100.0}
_LINE = re.compile(r"semantic results are (\[[^\]]*\]) depth results are (\[[^\]]*\]), normal results are (\[[^\]]*\])")


def parse_release_log(text: str, where: str = "the log") -> Metrics:
    """The final row of one release run: its last `... results are ...` line, in lhl's names and units."""
    lines = _LINE.findall(text)
    if not lines:
        raise ValueError(f"{where}: no 'semantic results are [...] depth results are [...], normal results "
                         "are [...]' line; is it the stdout of a finished release run (main.py)?")
    out: Metrics = {}
    for task, raw in zip(RELEASE_FIELDS, lines[-1]):
        values = [float(v) for v in ast.literal_eval(raw)]
        names = RELEASE_FIELDS[task]
        if len(values) != len(names):
            raise ValueError(f"{where}: the {task} list has {len(values)} values, expected {len(names)} ({names})")
        out[task] = {m: v * RELEASE_SCALE.get((task, m), 1.0) for m, v in zip(names, values)}
    return out


def compare_rows(release: Sequence[Metrics], lhl: Sequence[Metrics],
                 directions: Dict[str, Dict[str, bool]]) -> List[dict]:
    """One row per (task, metric) both sides report: per-seed values, stats, Welch's test, verdict."""
    rows = []
    for task, names in RELEASE_FIELDS.items():
        for m in names:
            if not all(m in r.get(task, {}) for r in (*release, *lhl)):
                continue
            a = [r[task][m] for r in release]
            b = [r[task][m] for r in lhl]
            sa, sb = mean_std(a), mean_std(b)
            diff = sb["mean"] - sa["mean"]
            rows.append({
                "task": task, "metric": m, "higher_is_better": directions.get(task, {}).get(m),
                "release": a, "lhl": b, "release_stats": sa, "lhl_stats": sb,
                "welch": welch_test(b, a),
                "agree": abs(diff) <= max(sa["std"], sb["std"]),
            })
    return rows


def _fmt(v: float, scale: float = None) -> str:
    """Decimals by the magnitude of `scale` (default `v`): 2 from 10 up, 3 from 1, else 4."""
    s = abs(v if scale is None else scale)
    return f"{v:.2f}" if s >= 10 else f"{v:.3f}" if s >= 1 else f"{v:.4f}"


def _pm(stats: dict) -> str:
    return f"{_fmt(stats['mean'])} ± {_fmt(stats['std'], stats['mean'])}"


def markdown(rows: Sequence[dict]) -> str:
    """The parity table (docs/benchmarks/release-parity.md): release and lhl per seed and mean ± std, lhl − release [95 %], verdict."""
    body = []
    for r in rows:
        w = r["welch"]
        ref = r["release_stats"]["mean"]
        ci = "" if w["ci95"] is None else f" [{_fmt(w['ci95'][0], ref)}, {_fmt(w['ci95'][1], ref)}]"
        body.append([
            f"{r['task']} {r['metric']}{arrow(r['higher_is_better'])}",
            " / ".join(_fmt(v) for v in r["release"]),
            _pm(r["release_stats"]),
            " / ".join(_fmt(v) for v in r["lhl"]),
            _pm(r["lhl_stats"]),
            ("+" if w["mean"] >= 0 else "") + _fmt(w["mean"], ref) + ci + ("" if w["p"] is None else f", p={w['p']:.2f}"),
            "agree" if r["agree"] else "**differ**",
        ])
    header = ["metric", "release (per seed)", "release", "lhl (per seed)", "lhl", "lhl − release [95 %], Welch",
              "within one seed std"]
    return "\n".join(table(header, body)) + "\n"


def cli(argv: List[str]) -> int:
    p = argparse.ArgumentParser(prog="lhl release-parity", description=" ".join(__doc__.split("\n\n")[0].split()))
    p.add_argument("--release", nargs="+", required=True, help="the release's stdout logs, one per seed")
    p.add_argument("--lhl", nargs="+", required=True, help="lhl run folders (with results.json), one per seed")
    p.add_argument("--out", default="release_parity.md", help="Markdown table (a .json beside it holds every number)")
    args = p.parse_args(argv)
    release = []
    for log in args.release:
        path = Path(log)
        if not path.is_file():
            raise SystemExit(f"lhl release-parity: --release {log}: no such file (give the release's stdout logs)")
        release.append(parse_release_log(path.read_text(errors="replace"), where=str(path)))
    runs = []
    for folder in args.lhl:
        if not (Path(folder) / RESULTS_JSON).is_file():
            raise SystemExit(f"lhl release-parity: --lhl {folder}: no results.json (give finished lhl run folders)")
        runs.append(Results.load(folder))
    rows = compare_rows(release, [final_metrics(r) for r in runs], runs[0].meta.get("directions", {}))
    if not rows:
        raise SystemExit("lhl release-parity: the release logs and the lhl runs share no metric")
    text = markdown(rows)
    out = Path(args.out)
    atomic_write_text(out, text)
    atomic_write_json(out.with_suffix(".json"), {"release_logs": args.release, "lhl_runs": args.lhl, "rows": rows})
    print(text + f"written: {out} and {out.with_suffix('.json')}")
    agree = sum(r["agree"] for r in rows)
    print(f"{agree} of {len(rows)} metrics agree within one seed std")
    return 0
