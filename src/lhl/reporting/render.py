"""Markdown of a run's results, of its report (final, Δ, forgetting) and of a multi-seed
comparison, with the shared direction arrow and table helpers."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Iterable, List, Mapping, Optional, Sequence, Tuple

from lhl.core.io import atomic_write_text
from lhl.core.machine import machine_label
from lhl.reporting.comparison import Comparison
from lhl.reporting.paired import ANCHORS
from lhl.runs.folder import RESULTS_MD
from lhl.runs.results import Metrics, PathLike, Results


def arrow(higher: Optional[bool]) -> str:
    """" ↑" when higher is better, " ↓" when lower is, "" when the direction is unknown."""
    return "" if higher is None else (" ↑" if higher else " ↓")


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> List[str]:
    """A Markdown table, one line per row."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


def _fmt(v: Optional[float]) -> str:
    if v is None:
        return "—"
    return "nan" if math.isnan(v) else f"{v:.4f}"


def interval_cell(t: Optional[dict]) -> str:
    """A paired test (`ranks.paired_test` / `welch_test`) as `+1.23 [+0.40, +2.06] *`: the mean
    difference, its 95 % interval, * when the interval excludes 0; "—" for no test."""
    if not t or t.get("mean") is None:
        return "—"
    if t.get("ci95") is None:
        return f"{t['mean']:+.2f}"
    lo, hi = t["ci95"]
    return f"{t['mean']:+.2f} [{lo:+.2f}, {hi:+.2f}]" + (" *" if lo > 0 or hi < 0 else "")


def _pm(s: Optional[dict], spec: str = ".4f") -> str:
    """`mean ± std` (the mean alone for a single run); a sign in `spec` applies to the mean only."""
    if not s:
        return "—"
    if s["mean"] is None or math.isnan(s["mean"]):
        return "nan"
    if s.get("n", 2) < 2:
        return f"{s['mean']:{spec}}"
    return f"{s['mean']:{spec}} ± {s['std']:{spec.lstrip('+')}}"


def _arrow_of(results: "Results", task: str, metric: str) -> str:
    return arrow(results.meta["directions"].get(task, {}).get(metric))


def _in_task_order(results: "Results", metrics: Mapping) -> List[Tuple[str, Mapping]]:
    """(task, its metrics) in the sequence's order (a reloaded JSON file has its keys sorted)."""
    order = {t: i for i, t in enumerate(results.tasks)}
    return sorted(metrics.items(), key=lambda item: order.get(item[0], len(order)))


def _metrics_table(results: "Results", metrics: "Metrics") -> List[str]:
    """One row per (task, metric), the arrow giving the better direction."""
    rows = [[t, m + _arrow_of(results, t, m), _fmt(v)]
            for t, ms in _in_task_order(results, metrics) for m, v in ms.items()]
    return table(["task", "metric", "value"], rows)


def _title(results: "Results") -> str:
    m = results.meta
    parts = [f"{k}={m[k]}" for k in ("dataset", "sequence", "method", "seed") if m.get(k) not in (None, "")]
    return "# Results" + (" — " + ", ".join(parts) if parts else "")


def class_iou_tables(results: "Results") -> List[str]:
    """Per task with per-class IoU recorded (`details.class_iou`): one row per class (named by
    `meta["class_names"]` when known), one column per phase that evaluated it."""
    lines = []
    for t in results.tasks:
        per_phase = results.class_iou(t)
        cols = [(p, v) for p, v in zip(results.phases, per_phase) if v is not None]
        if not cols:
            continue
        names = results.class_names(t) or [str(c) for c in range(len(cols[0][1]))]
        lines += [f"## Per-class IoU: {t}", "", "— : the class is in neither prediction nor label.", ""]
        header = ["class"] + [f"after phase {p['phase']}" for p, _ in cols]
        rows = [[name] + ["—" if math.isnan(v[c]) else f"{v[c]:.4f}" for _, v in cols] for c, name in enumerate(names)]
        lines += table(header, rows) + [""]
    return lines


def made_on(results: "Results") -> List[str]:
    """`Made on: <machine>` (several when a resume moved the run), or nothing for older runs."""
    if not results.machines:
        return []
    return ["Made on: " + "; ".join(machine_label(m) for m in results.machines), ""]


def machines_note(machines: Iterable[Optional[List[dict]]]) -> List[str]:
    """Markdown lines saying what a table's runs were made on: one machine, several (then a warning
    that their rows differ in rounding as well as in method), and how many runs did not record it."""
    machines = list(machines)
    labels = sorted({machine_label(m) for ms in machines for m in (ms or [])})
    unknown = sum(1 for ms in machines if not ms)
    lines = []
    if len(labels) == 1:
        lines.append(f"Made on: {labels[0]}.")
    elif labels:
        lines.append(f"Made on {len(labels)} machine setups: " + "; ".join(labels) + ". Runs made on different "
                     "CPU capabilities or thread counts differ in rounding, which a lifelong sequence grows "
                     "into different results: compare rows made on one.")
    if unknown:
        lines.append(f"{unknown} run(s) of {len(machines)} did not record their machine (made before lhl noted it).")
    return lines + [""] if lines else []


def write_results(results: Results, run_dir: PathLike) -> Path:
    """`results.json` and its Markdown, `results.md`, atomically into `run_dir`; the JSON's path."""
    path = results.save(run_dir)
    atomic_write_text(Path(run_dir) / RESULTS_MD, render_markdown(results))
    return path


def render_markdown(results: Results) -> str:
    """Per phase every seen task's metrics, then the main-metric matrix (phases x tasks) and the
    final row."""
    lines = [_title(results), ""] + made_on(results)
    for p in results.phases:
        lines += [f"## Phase {p['phase']} (trained: {', '.join(p['trained'])})", ""]
        lines += _metrics_table(results, p["metrics"]) + [""]
    tasks = results.tasks
    if results.phases and tasks:
        lines += ["## Main metric per phase", ""]
        header = ["phase"] + [f"{t} {results.main_metric(t)}{_arrow_of(results, t, results.main_metric(t))}"
                              for t in tasks]
        rows = [[f"{p['phase']} ({', '.join(p['trained'])})"]
                + [_fmt(p["metrics"].get(t, {}).get(results.main_metric(t))) for t in tasks]
                for p in results.phases]
        lines += table(header, rows) + [""]
        final = results.phases[-1]
        lines += [f"**Final (after phase {final['phase']}):** "
                  + ", ".join(f"{t} {m} {_fmt(v)}" for t, ms in _in_task_order(results, final["metrics"])
                              for m, v in ms.items()), ""]
    lines += class_iou_tables(results)
    return "\n".join(lines)


def report_markdown(results: "Results", data: dict, ref_name: Optional[str]) -> str:
    """The report of one run from `scores.report_data`: final metrics, Δ vs `ref_name`, forgetting."""
    lines = [_title(results), ""] + made_on(results) + ["## Final metrics", ""]
    lines += _metrics_table(results, data["final"]) + [""]
    if "delta" in data:
        lines += [f"## Δ vs {ref_name}", "", f"**Δ = {data['delta']:+.2f}%** (> 0: better than the reference)", ""]
        lines += table(["task", "Δ_t %"], [[t, f"{v:+.2f}"] for t, v in data["delta_per_task"].items()]) + [""]
        if data.get("delta_after_phases"):
            lines += table([f"Δ after phase {i}" for i in range(len(data["delta_after_phases"]))],
                           [["—" if v is None else f"{v:+.2f}" for v in data["delta_after_phases"]]]) + [""]
    if data.get("backward_transfer") is not None:
        lines += [f"**Relative backward transfer = {data['backward_transfer']:+.2f}%** (> 0 = improved since "
                  "learned; average relative forgetting is its negative)", ""]
    lines += ["## Forgetting", "", "After the phase that trained the task minus after the last phase; "
              "> 0 = worse now (metric units, and % of the learned value).", ""]
    rows = [[t, m + _arrow_of(results, t, m), _fmt(v), f"{data['forgetting_rel'][t][m]:+.2f}%"]
            for t, ms in data["forgetting"].items() for m, v in ms.items()]
    lines += (table(["task", "metric", "forgetting", "relative"], rows) if rows
              else ["(no task learned before the last phase)"]) + [""]
    lines += class_iou_tables(results)
    return "\n".join(lines)


def _fmt_rank(v: Optional[float]) -> str:
    return "—" if v is None or math.isnan(v) else f"{v:.2f}"


def paired_markdown(paired: Mapping[str, Mapping[str, dict]], anchors: Optional[Sequence[str]] = None) -> list:
    """Lines of a table: per method, the paired Δ difference against each anchor `mean [lo, hi]`,
    starred when the interval excludes 0; `anchors` default to `paired.ANCHORS`."""
    present = [a for a in (ANCHORS if anchors is None else anchors) if any(a in p for p in paired.values())]
    if not present:
        return []

    lines = ["## Paired Δ difference vs " + " and ".join(present) + " (percentage points, 95 % t interval over seeds)",
             "", "Δ of the method minus Δ of the anchor, seed by seed; * = the interval excludes 0.", "",
             "| method | " + " | ".join(f"vs {a}" for a in present) + " |",
             "|---" * (len(present) + 1) + "|"]
    lines += [f"| {name} | " + " | ".join(interval_cell(p.get(a)) for a in present) + " |" for name, p in paired.items()]
    return lines + [""]


def compare_markdown(obj: Comparison) -> str:
    """The comparison of `aggregate.compare`: per task a table of methods, then Δ and forgetting."""
    methods = obj.methods
    lines = ["# Comparison (mean ± std over seeds, after the last phase)", ""]
    if obj.machines:
        lines += machines_note(obj.machines)
    for t in obj.tasks:
        directions = obj.directions.get(t, {})
        metrics = list(directions) or sorted({m for e in methods.values() for m in e.final.get(t, {})})
        lines += [f"## {t}", ""]
        rows = [[f"{name} (n={len(e.seeds)})"] + [_pm(e.final.get(t, {}).get(m)) for m in metrics]
                for name, e in methods.items()]
        lines += table(["method"] + [m + arrow(directions.get(m)) for m in metrics], rows) + [""]
    if obj.reference is not None:
        lines += ["## Δ vs reference (%)", "", f"reference: {', '.join(obj.reference['runs'])}", ""]
        rows = [[name, _pm(e.delta, "+.2f"), _fmt_rank(e.mean_rank)]
                + [_pm(e.delta_per_task.get(t), "+.2f") for t in obj.tasks] for name, e in methods.items()]
        lines += table(["method", "Δ", "MR ↓"] + [f"Δ {t}" for t in obj.tasks], rows) + [""]
        pairing = {e.delta_pairing for e in methods.values()}
        lines += [f"Δ pairs each seed with the reference's run of the same seed" if pairing == {"seed"} else
                  "Δ against the mean of the reference's runs (seeds not matched)", ""]
        lines += paired_markdown({n: e.paired_delta for n, e in methods.items() if e.paired_delta})
        after = [[name] + [_pm(s, "+.2f") for s in (e.delta_after_phases or [])] for name, e in methods.items()]
        width = max(len(r) for r in after) - 1
        if width > 0:
            lines += ["## Δ after every phase (%)", ""]
            lines += table(["method"] + [f"phase {i}" for i in range(width)],
                           [r + ["—"] * (width + 1 - len(r)) for r in after]) + [""]
    else:
        lines += ["## Mean rank (MR, 1 = best)", ""]
        lines += table(["method", "MR ↓"], [[n, _fmt_rank(e.mean_rank)] for n, e in methods.items()]) + [""]
    if any(e.plasticity for e in methods.values()):
        rows = [[name, _pm(e.backward_transfer, "+.2f"), _pm(e.plasticity, "+.2f")]
                for name, e in methods.items()]
        lines += ["## Stability and plasticity (%)", "",
                  "BWT: relative backward transfer (> 0 = improved since learned; average forgetting = −BWT). "
                  "Plasticity: the new task's Δ right after its phase against the reference's run of the same "
                  "seed, over the phases after the first (intransigence = −plasticity).", ""]
        lines += table(["method", "BWT", "plasticity"], rows) + [""]
    else:
        rows = [[name, _pm(e.backward_transfer, "+.2f")] for name, e in methods.items()]
        lines += ["## Relative backward transfer (%, > 0 = improved since learned; average forgetting = −BWT)", ""]
        lines += table(["method", "BWT"], rows) + [""]
    lines += ["## Forgetting of the main metric (> 0 = worse than when learned)", ""]
    rows = [[name] + [_pm(e.forgetting.get(t, {}).get(obj.main_metric[t])) for t in obj.tasks]
            for name, e in methods.items()]
    lines += table(["method"] + [f"{t} {obj.main_metric[t]}" for t in obj.tasks], rows) + [""]
    if any(e.forgetting_rel for e in methods.values()):
        lines += ["## Relative forgetting of the main metric (% of its value when learned, > 0 = worse)", ""]
        rows = [[name] + [_pm(e.forgetting_rel.get(t, {}).get(obj.main_metric[t]), "+.1f")
                          for t in obj.tasks] for name, e in methods.items()]
        lines += table(["method"] + [f"{t} {obj.main_metric[t]}" for t in obj.tasks], rows) + [""]
    return "\n".join(lines)
