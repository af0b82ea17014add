"""The results matrix of a lifelong run (every seen task's metrics after every phase), its
Markdown rendering, Δ against a reference run, forgetting, and multi-seed comparison.

Conventions (DESIGN.md section 5): a metric's direction comes from `meta["directions"]`
({task: {metric: higher_is_better}}); Δ and forgetting are sign-corrected so that Δ > 0 means
better than the reference and forgetting > 0 means worse than right after learning.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from lhl.core.io import atomic_write_json, atomic_write_text

RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"

Metrics = Dict[str, Dict[str, float]]
PathLike = Union[str, Path]


def _num(v) -> float:
    """A stored metric as a float (None, as JSON null, is NaN)."""
    if v is None:
        return math.nan
    return float(v.item() if hasattr(v, "item") else v)


class Results:
    """Metadata plus one record per phase: `{"phase": i, "trained": [tasks], "metrics": {task: {metric: v}}}`.

    `meta` holds dataset, sequence, method, seed, tasks (the order), directions and main_metric.
    """

    def __init__(self, meta: Optional[Mapping] = None, phases: Iterable[Mapping] = ()):
        self.meta = dict(meta or {})
        self.meta.setdefault("tasks", [])
        self.meta.setdefault("directions", {})
        self.meta.setdefault("main_metric", {})
        self.phases: List[dict] = []
        for p in phases:
            self.add_phase(p["phase"], p["trained"], p["metrics"])

    @classmethod
    def from_specs(cls, specs: Sequence, *, dataset: str = "", sequence: str = "", method: str = "",
                   seed: int = 0, **extra) -> "Results":
        """An empty matrix whose task order, directions and main metrics come from TaskSpecs."""
        meta = dict(dataset=dataset, sequence=sequence, method=method, seed=seed,
                    tasks=[s.name for s in specs],
                    directions={s.name: dict(s.metric_directions) for s in specs},
                    main_metric={s.name: s.main_metric for s in specs}, **extra)
        return cls(meta)

    # --- building -------------------------------------------------------------------------
    def add_phase(self, phase: int, trained: Union[str, Sequence[str]], metrics: Mapping) -> None:
        """Record phase `phase`; a phase already present is replaced (a resumed run re-evaluates)."""
        trained = [trained] if isinstance(trained, str) else list(trained)
        record = {"phase": int(phase), "trained": trained,
                  "metrics": {t: {m: _num(v) for m, v in ms.items()} for t, ms in metrics.items()}}
        self.phases = [p for p in self.phases if p["phase"] != record["phase"]] + [record]
        self.phases.sort(key=lambda p: p["phase"])
        for t in [*trained, *record["metrics"]]:
            if t not in self.meta["tasks"]:
                self.meta["tasks"].append(t)

    # --- access ---------------------------------------------------------------------------
    @property
    def tasks(self) -> List[str]:
        return list(self.meta["tasks"])

    def higher_is_better(self, task: str, metric: str) -> bool:
        try:
            return bool(self.meta["directions"][task][metric])
        except KeyError:
            raise KeyError(f"results meta has no direction for {task}/{metric}: "
                           f"add meta['directions'][{task!r}][{metric!r}] (True when higher is better)") from None

    def main_metric(self, task: str) -> str:
        name = self.meta["main_metric"].get(task)
        if name:
            return name
        for p in self.phases:
            if task in p["metrics"]:
                return next(iter(p["metrics"][task]))
        raise KeyError(f"no main metric and no values for task {task!r}")

    def matrix(self, task: str, metric: str) -> List[Optional[float]]:
        """`metric` of `task` after each phase, None where the task was not evaluated."""
        return [p["metrics"].get(task, {}).get(metric) for p in self.phases]

    def learned_phase(self, task: str) -> Optional[int]:
        """Index (into `phases`) of the last phase that trained `task`."""
        idx = [i for i, p in enumerate(self.phases) if task in p["trained"]]
        return idx[-1] if idx else None

    def to_dict(self) -> dict:
        return {"meta": self.meta, "phases": self.phases}

    # --- files ----------------------------------------------------------------------------
    def save(self, run_dir: PathLike) -> Path:
        """Write `results.json` and `results.md` atomically into `run_dir`; returns the JSON path."""
        run_dir = Path(run_dir)
        path = atomic_write_json(run_dir / RESULTS_JSON, self.to_dict())
        atomic_write_text(run_dir / RESULTS_MD, render_markdown(self))
        return path

    @classmethod
    def load(cls, path: PathLike) -> "Results":
        """Read a run folder's `results.json` (or the file itself); errors name the file."""
        path = Path(path)
        if path.is_dir():
            path = path / RESULTS_JSON
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no results file (expected a run folder holding {RESULTS_JSON})")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(data["meta"], data["phases"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as e:
            raise ValueError(f"{path}: malformed results file ({type(e).__name__}: {e}); "
                             "expected {'meta': {...}, 'phases': [{'phase', 'trained', 'metrics'}, ...]}") from e


# --- rendering ------------------------------------------------------------------------------
def _fmt(v: Optional[float]) -> str:
    if v is None:
        return "—"
    return "nan" if math.isnan(v) else f"{v:.4f}"


def _arrow(results: Results, task: str, metric: str) -> str:
    d = results.meta["directions"].get(task, {}).get(metric)
    return "" if d is None else (" ↑" if d else " ↓")


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> List[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


def _in_task_order(results: Results, metrics: Mapping) -> List[Tuple[str, Mapping]]:
    """(task, its metrics) in the sequence's order (a reloaded JSON file has its keys sorted)."""
    order = {t: i for i, t in enumerate(results.tasks)}
    return sorted(metrics.items(), key=lambda item: order.get(item[0], len(order)))


def _metrics_table(results: Results, metrics: Metrics) -> List[str]:
    """One row per (task, metric), the arrow giving the better direction."""
    rows = [[t, m + _arrow(results, t, m), _fmt(v)]
            for t, ms in _in_task_order(results, metrics) for m, v in ms.items()]
    return _table(["task", "metric", "value"], rows)


def _title(results: Results) -> str:
    m = results.meta
    parts = [f"{k}={m[k]}" for k in ("dataset", "sequence", "method", "seed") if m.get(k) not in (None, "")]
    return "# Results" + (" — " + ", ".join(parts) if parts else "")


def render_markdown(results: Results) -> str:
    """Per phase every seen task's metrics, then the main-metric matrix (phases x tasks) and the
    final row."""
    lines = [_title(results), ""]
    for p in results.phases:
        lines += [f"## Phase {p['phase']} (trained: {', '.join(p['trained'])})", ""]
        lines += _metrics_table(results, p["metrics"]) + [""]
    tasks = results.tasks
    if results.phases and tasks:
        lines += ["## Main metric per phase", ""]
        header = ["phase"] + [f"{t} {results.main_metric(t)}{_arrow(results, t, results.main_metric(t))}"
                              for t in tasks]
        rows = [[f"{p['phase']} ({', '.join(p['trained'])})"]
                + [_fmt(p["metrics"].get(t, {}).get(results.main_metric(t))) for t in tasks]
                for p in results.phases]
        lines += _table(header, rows) + [""]
        final = results.phases[-1]
        lines += [f"**Final (after phase {final['phase']}):** "
                  + ", ".join(f"{t} {m} {_fmt(v)}" for t, ms in _in_task_order(results, final["metrics"])
                              for m, v in ms.items()), ""]
    return "\n".join(lines)


# --- derived quantities ---------------------------------------------------------------------
def final_metrics(results: Results) -> Metrics:
    """Each task's latest available metrics; for a `single_task` run (a fresh model per phase) the
    values from the phase that trained the task."""
    out: Metrics = {}
    independent = results.meta.get("method") == "single_task"
    for t in results.tasks:
        learned = results.learned_phase(t)
        if independent and learned is not None and t in results.phases[learned]["metrics"]:
            out[t] = dict(results.phases[learned]["metrics"][t])
            continue
        for p in reversed(results.phases):
            if t in p["metrics"]:
                out[t] = dict(p["metrics"][t])
                break
    return out


def _relative_gain(value: float, base: float, higher: bool, where: str) -> float:
    """(-1)^s (M - M_b) / M_b with s = 1 when lower is better."""
    if base == 0:
        raise ValueError(f"Δ undefined for {where}: the reference value is 0")
    return (value - base) / base * (1.0 if higher else -1.0)


def delta_per_task(results: Results, reference: Union[Results, Metrics]) -> Dict[str, float]:
    """Δ_t (%) = 100/N_t Σ_j (-1)^{s_tj} (M_tj - M^b_tj) / M^b_tj over the metrics both runs have;
    `reference` is a Results (its `final_metrics`) or an already reduced {task: {metric: value}}."""
    ours = final_metrics(results)
    ref = final_metrics(reference) if isinstance(reference, Results) else reference
    out = {}
    for t, ms in ours.items():
        if t not in ref:
            raise KeyError(f"reference has no metrics for task {t!r} (it has {sorted(ref)})")
        common = [m for m in ms if m in ref[t]]
        if not common:
            raise KeyError(f"task {t!r}: no metric in common with the reference")
        gains = [_relative_gain(ms[m], ref[t][m], results.higher_is_better(t, m), f"{t}/{m}") for m in common]
        out[t] = 100.0 * sum(gains) / len(gains)
    return out


def delta(results: Results, reference: Union[Results, Metrics]) -> float:
    """Δ (%) = the mean over tasks of `delta_per_task` (LibMTL); > 0 means better than the reference."""
    per_task = delta_per_task(results, reference)
    return sum(per_task.values()) / len(per_task)


def forgetting(results: Results, relative: bool = False) -> Metrics:
    """For each task learned before the last phase: its metric right after the (last) phase that
    trained it minus after the last phase, signed so that > 0 = worse now, in the metric's units
    (`relative=True`: in % of the learned value). Tasks trained in the last phase are left out."""
    if not results.phases:
        return {}
    last = len(results.phases) - 1
    final = results.phases[last]["metrics"]
    out: Metrics = {}
    for t in results.tasks:
        k = results.learned_phase(t)
        if k is None or k == last or t not in final or t not in results.phases[k]["metrics"]:
            continue
        learned = results.phases[k]["metrics"][t]
        out[t] = {}
        for m, v0 in learned.items():
            if m not in final[t]:
                continue
            f = (v0 - final[t][m]) if results.higher_is_better(t, m) else (final[t][m] - v0)
            out[t][m] = 100.0 * f / abs(v0) if relative else f
    return out


# --- reports --------------------------------------------------------------------------------
def report_data(results: Results, reference: Optional[Results] = None) -> dict:
    """Final metrics, Δ (when a reference is given) and forgetting of one run, as plain data."""
    data = {"meta": results.meta, "final": final_metrics(results),
            "forgetting": forgetting(results), "forgetting_rel": forgetting(results, relative=True)}
    if reference is not None:
        data["delta"] = delta(results, reference)
        data["delta_per_task"] = delta_per_task(results, reference)
    return data


def _report_markdown(results: Results, data: dict, ref_name: Optional[str]) -> str:
    lines = [_title(results), "", "## Final metrics", ""]
    lines += _metrics_table(results, data["final"]) + [""]
    if "delta" in data:
        lines += [f"## Δ vs {ref_name}", "", f"**Δ = {data['delta']:+.2f}%** (> 0: better than the reference)", ""]
        lines += _table(["task", "Δ_t %"], [[t, f"{v:+.2f}"] for t, v in data["delta_per_task"].items()]) + [""]
    lines += ["## Forgetting", "", "After the phase that trained the task minus after the last phase; "
              "> 0 = worse now (metric units, and % of the learned value).", ""]
    rows = [[t, m + _arrow(results, t, m), _fmt(v), f"{data['forgetting_rel'][t][m]:+.2f}%"]
            for t, ms in data["forgetting"].items() for m, v in ms.items()]
    lines += (_table(["task", "metric", "forgetting", "relative"], rows) if rows else ["(no task learned before the last phase)"]) + [""]
    return "\n".join(lines)


def report(run_dir: PathLike, ref_dir: Optional[PathLike] = None) -> str:
    """Markdown report of one run: final metrics, Δ vs `ref_dir` if given, forgetting."""
    results = Results.load(run_dir)
    reference = Results.load(ref_dir) if ref_dir is not None else None
    return _report_markdown(results, report_data(results, reference), str(ref_dir) if ref_dir else None)


def cli(argv: Optional[Sequence[str]] = None) -> int:
    """`lhl report RUN [--ref RUN] [--json OUT]`: print the report, optionally write its data."""
    parser = argparse.ArgumentParser(prog="lhl report", description="Report a run's results (final, Δ, forgetting).")
    parser.add_argument("run", help="run folder (or its results.json)")
    parser.add_argument("--ref", default=None, help="reference run folder for Δ (single-task, joint, ...)")
    parser.add_argument("--json", default=None, dest="json_out", help="also write the numbers to this JSON file")
    args = parser.parse_args(argv)
    try:
        results = Results.load(args.run)
        reference = Results.load(args.ref) if args.ref else None
        data = report_data(results, reference)
    except (FileNotFoundError, ValueError, KeyError) as e:
        print(f"lhl report: {e}", file=sys.stderr)
        return 2
    print(_report_markdown(results, data, args.ref))
    if args.json_out:
        atomic_write_json(args.json_out, data)
    return 0


# --- multi-seed comparison ------------------------------------------------------------------
def _stats(values: Sequence[float]) -> dict:
    """Mean, sample standard deviation (0 for a single value) and count."""
    values = [float(v) for v in values]
    mean = sum(values) / len(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": mean, "std": std, "n": len(values)}


def _nested_stats(per_run: Sequence[Metrics]) -> Dict[str, Dict[str, dict]]:
    """{task: {metric: stats}} over runs, for the (task, metric) pairs every run has."""
    first = per_run[0]
    return {t: {m: _stats([r[t][m] for r in per_run]) for m in ms if all(m in r.get(t, {}) for r in per_run)}
            for t, ms in first.items() if all(t in r for r in per_run)}


def _pm(s: Optional[dict], spec: str = ".4f") -> str:
    """`mean ± std` (the mean alone for a single run); a sign in `spec` applies to the mean only."""
    if not s:
        return "—"
    if s["mean"] is None or math.isnan(s["mean"]):
        return "nan"
    if s.get("n", 2) < 2:
        return f"{s['mean']:{spec}}"
    return f"{s['mean']:{spec}} ± {s['std']:{spec.lstrip('+')}}"


def compare(run_dirs_by_method: Mapping[str, Sequence[PathLike]],
            ref: Union[None, str, PathLike, Sequence[PathLike]] = None) -> Tuple[str, dict]:
    """Final metrics (mean ± sample std over seeds) per method and task, Δ vs a reference and
    forgetting. `ref` is a method name of `run_dirs_by_method`, a run folder, or folders over
    seeds; the reference values are the mean of its runs' final metrics."""
    runs = {m: [Results.load(d) for d in dirs] for m, dirs in run_dirs_by_method.items()}
    empty = [m for m, rs in runs.items() if not rs]
    if empty:
        raise ValueError(f"compare: no run folders given for method(s) {empty}")
    ref_dirs: List[PathLike] = []
    if ref is not None:
        if isinstance(ref, str) and ref in run_dirs_by_method:
            ref_dirs = list(run_dirs_by_method[ref])
        elif isinstance(ref, (str, Path)):
            ref_dirs = [ref]
        else:
            ref_dirs = list(ref)
    ref_final = None
    if ref_dirs:
        ref_stats = _nested_stats([final_metrics(Results.load(d)) for d in ref_dirs])
        ref_final = {t: {m: s["mean"] for m, s in ms.items()} for t, ms in ref_stats.items()}

    first = next(iter(runs.values()))[0]
    tasks, directions, mains = list(first.tasks), {}, {}
    for rs in runs.values():
        for r in rs:
            tasks += [t for t in r.tasks if t not in tasks]
            for t in r.tasks:
                directions.setdefault(t, dict(r.meta["directions"].get(t, {})))
                mains.setdefault(t, r.main_metric(t))

    methods = {}
    for name, rs in runs.items():
        entry = {"runs": [str(d) for d in run_dirs_by_method[name]],
                 "seeds": [r.meta.get("seed") for r in rs],
                 "final": _nested_stats([final_metrics(r) for r in rs]),
                 "forgetting": _nested_stats([forgetting(r) for r in rs]),
                 "delta": None, "delta_per_task": {}}
        if ref_final is not None:
            entry["delta"] = _stats([delta(r, ref_final) for r in rs])
            per_task = [delta_per_task(r, ref_final) for r in rs]
            entry["delta_per_task"] = {t: _stats([p[t] for p in per_task]) for t in per_task[0]}
        methods[name] = entry

    obj = {"tasks": tasks, "directions": directions, "main_metric": mains, "methods": methods,
           "reference": None if ref_final is None else {"runs": [str(d) for d in ref_dirs], "final": ref_final}}
    return _compare_markdown(obj), obj


def _compare_markdown(obj: dict) -> str:
    methods = obj["methods"]
    lines = ["# Comparison (mean ± std over seeds, after the last phase)", ""]
    for t in obj["tasks"]:
        metrics = list(obj["directions"].get(t, {})) or sorted(
            {m for e in methods.values() for m in e["final"].get(t, {})})
        arrows = ["" if obj["directions"].get(t, {}).get(m) is None else (" ↑" if obj["directions"][t][m] else " ↓")
                  for m in metrics]
        lines += [f"## {t}", ""]
        rows = [[f"{name} (n={len(e['seeds'])})"] + [_pm(e["final"].get(t, {}).get(m)) for m in metrics]
                for name, e in methods.items()]
        lines += _table(["method"] + [m + a for m, a in zip(metrics, arrows)], rows) + [""]
    if obj["reference"] is not None:
        lines += ["## Δ vs reference (%)", "", f"reference: {', '.join(obj['reference']['runs'])}", ""]
        rows = [[name, _pm(e["delta"], "+.2f")] + [_pm(e["delta_per_task"].get(t), "+.2f") for t in obj["tasks"]]
                for name, e in methods.items()]
        lines += _table(["method", "Δ"] + [f"Δ {t}" for t in obj["tasks"]], rows) + [""]
    lines += ["## Forgetting of the main metric (> 0 = worse than when learned)", ""]
    rows = [[name] + [_pm(e["forgetting"].get(t, {}).get(obj["main_metric"][t])) for t in obj["tasks"]]
            for name, e in methods.items()]
    lines += _table(["method"] + [f"{t} {obj['main_metric'][t]}" for t in obj["tasks"]], rows) + [""]
    return "\n".join(lines)
