"""Scores of a run, pure functions of its Results: final metrics, Δ against a reference and
forgetting, sign-corrected so that Δ > 0 is better than the reference and forgetting > 0 is
worse than right after learning (docs/concepts/metrics.md)."""
from __future__ import annotations

import statistics
from typing import Dict, Optional, Sequence, Union

from lhl.core.errors import UsageError
from lhl.runs.results import Metrics, Results


def final_metrics(results: Results) -> Metrics:
    """Each task's latest available metrics; for a run with independent phases (a fresh model
    per phase, as single_task) the values from the phase that trained the task."""
    out: Metrics = {}
    meta = results.meta
    # results.json files written before the flag existed: method single_task meant independent phases
    independent = bool(meta.get("independent_phases", meta.get("method") == "single_task"))
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


def mean_std(values: Sequence[float]) -> dict:
    """Mean, sample standard deviation (0 for a single value) and count."""
    values = [float(v) for v in values]
    mean = sum(values) / len(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": mean, "std": std, "n": len(values)}


def relative_gain(value: float, base: float, higher: bool, where: str) -> float:
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
            raise UsageError(f"reference has no metrics for task {t!r} (it has {sorted(ref)})")
        common = [m for m in ms if m in ref[t]]
        if not common:
            raise UsageError(f"task {t!r}: no metric in common with the reference")
        gains = [relative_gain(ms[m], ref[t][m], results.higher_is_better(t, m), f"{t}/{m}") for m in common]
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


def report_data(results: Results, reference: Optional[Results] = None) -> dict:
    """Final metrics, Δ (when a reference is given) and forgetting of one run, as plain data."""
    data = {"meta": results.meta, "final": final_metrics(results),
            "forgetting": forgetting(results), "forgetting_rel": forgetting(results, relative=True)}
    if reference is not None:
        data["delta"] = delta(results, reference)
        data["delta_per_task"] = delta_per_task(results, reference)
    return data
