"""The paper's comparison scores over methods and seeds, pure functions: mean rank, per-seed
paired Δ, Δ after every phase, backward transfer, and a paired test over seeds.

* **Mean rank (MR)**: every method is ranked on every metric of every task by its mean over
  seeds (1 = best, in the metric's direction; ties share the average rank); MR is the mean of a
  method's ranks over all those (task, metric) pairs that every method has. The reference is
  one of the methods ranked.
* **Paired Δ**: each seed's run against the reference run of the same seed, when the reference
  has a run for every seed of the method; otherwise against the mean of the reference's runs.
* **Paired test**: a paired t-test on per-seed values (scipy's t distribution when installed,
  else a t quantile computed here); the mean difference with its 95% interval.
"""
from __future__ import annotations

import math
import statistics
from typing import Dict, List, Mapping, Optional, Sequence, Union

from lhl.runs.results import Metrics, Results
from lhl.reporting.scores import delta, final_metrics, forgetting

__all__ = ["average_ranks", "mean_rank", "paired_delta", "delta_after_phases", "backward_transfer",
           "one_sample_test", "paired_test", "t_quantile"]


def average_ranks(values: Mapping[str, float], higher_is_better: bool) -> Dict[str, float]:
    """{name: rank} with 1 = best; tied values share the average of the ranks they span."""
    order = sorted(values, key=lambda k: -values[k] if higher_is_better else values[k])
    ranks: Dict[str, float] = {}
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in order[i:j + 1]:
            ranks[k] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def mean_rank(means: Mapping[str, Metrics], directions: Mapping[str, Mapping[str, bool]]) -> Dict[str, float]:
    """{method: MR} from {method: {task: {metric: mean over seeds}}} and {task: {metric: higher}}."""
    names = list(means)
    per_method: Dict[str, List[float]] = {n: [] for n in names}
    for task, metrics in directions.items():
        for metric, higher in metrics.items():
            if not all(metric in means[n].get(task, {}) for n in names):
                continue
            vals = {n: means[n][task][metric] for n in names}
            if any(v is None or math.isnan(v) for v in vals.values()):
                continue
            for n, r in average_ranks(vals, bool(higher)).items():
                per_method[n].append(r)
    return {n: (sum(r) / len(r) if r else math.nan) for n, r in per_method.items()}


def _seed(r: Results):
    return r.meta.get("seed")


def _reference_for(run: Results, refs: Sequence[Results], fallback: Metrics) -> Metrics:
    same = [r for r in refs if _seed(r) == _seed(run)]
    return final_metrics(same[0]) if same else fallback


def pairs_by_seed(runs: Sequence[Results], refs: Sequence[Results]) -> bool:
    """Whether every run has a reference run of its own seed (then Δ pairs them)."""
    seeds = {_seed(r) for r in refs}
    return bool(refs) and all(_seed(r) is not None and _seed(r) in seeds for r in runs)


def paired_delta(runs: Sequence[Results], refs: Sequence[Results], fallback: Metrics) -> List[float]:
    """Δ (%) of each run, against the reference run of the same seed when every run has one,
    else against `fallback` (the mean of the reference's final metrics)."""
    if pairs_by_seed(runs, refs):
        return [delta(r, _reference_for(r, refs, fallback)) for r in runs]
    return [delta(r, fallback) for r in runs]


def delta_after_phases(run: Results, ref: Union[Results, Metrics]) -> List[Optional[float]]:
    """Δ (%) after every phase, over the tasks evaluated then: against the reference run's
    metrics after the same phase (each task's latest there; a reference with independent phases
    or a reduced {task: {metric}} gives its final metrics)."""
    out: List[Optional[float]] = []
    for i, p in enumerate(run.phases):
        sub = Results(run.meta, [{"phase": 0, "trained": [], "metrics": p["metrics"]}])
        if isinstance(ref, Results) and not ref.meta.get("independent_phases") and i < len(ref.phases):
            ref_sub = Results(ref.meta, [{"phase": 0, "trained": [], "metrics": {
                t: m for q in ref.phases[:i + 1] for t, m in q["metrics"].items()}}])
            base = final_metrics(ref_sub)
        else:
            base = final_metrics(ref) if isinstance(ref, Results) else ref
        try:
            out.append(delta(sub, base))
        except (KeyError, ValueError):
            out.append(None)
    return out


def backward_transfer(run: Results) -> Optional[float]:
    """Relative backward transfer (%): the mean over the tasks learned before the last phase of
    the mean over their metrics of -forgetting in % of the learned value (> 0: improved since
    learned). Average forgetting in relative form is its negative. None when no such task."""
    rel = forgetting(run, relative=True)
    per_task = [-sum(ms.values()) / len(ms) for ms in rel.values() if ms]
    return sum(per_task) / len(per_task) if per_task else None


# --- the paired test ------------------------------------------------------------------------------
def _beta_cf(a: float, b: float, x: float) -> float:
    """The continued fraction of the incomplete beta function (Lentz; Numerical Recipes betacf)."""
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        for num in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                    -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1 + num * d
            d = 1 / (d if abs(d) > tiny else tiny)
            c = 1 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
    return h


def _incomplete_beta(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function I_x(a, b)."""
    if x <= 0 or x >= 1:
        return 0.0 if x <= 0 else 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1) / (a + b + 2):
        return front * _beta_cf(a, b, x) / a
    return 1 - front * _beta_cf(b, a, 1 - x) / b


def _t_cdf(t: float, df: int) -> float:
    """Student's t CDF: P(T > |t|) = I_{df/(df+t²)}(df/2, 1/2) / 2."""
    tail = 0.5 * _incomplete_beta(df / 2.0, 0.5, df / (df + t * t))
    return 1 - tail if t > 0 else tail


def t_quantile(q: float, df: int) -> float:
    """The q quantile (q > 0.5) of Student's t with df degrees of freedom (scipy when installed)."""
    try:
        from scipy.stats import t as student_t
        return float(student_t.ppf(q, df))
    except ImportError:
        lo, hi = 0.0, 1e3
        for _ in range(200):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if _t_cdf(mid, df) < q else (lo, mid)
        return (lo + hi) / 2


def _two_sided_p(t: float, df: int) -> float:
    try:
        from scipy.stats import t as student_t
        return float(2 * student_t.sf(abs(t), df))
    except ImportError:
        return 2 * (1 - _t_cdf(abs(t), df))


def one_sample_test(values: Sequence[float]) -> dict:
    """One-sample t-test of the values' mean against 0: the mean, its 95% interval, t, two-sided p,
    n. With fewer than 2 values (or no spread) the interval and p are None."""
    values = [float(v) for v in values]
    n = len(values)
    out = {"mean": sum(values) / n if n else None, "ci95": None, "t": None, "p": None, "n": n}
    if n < 2:
        return out
    sd = statistics.stdev(values)
    if sd <= 1e-12 * max(1.0, abs(out["mean"])):  # no spread (up to rounding): no interval
        return out
    return _with_t_interval(out, sd / math.sqrt(n), n - 1)


def paired_test(a: Sequence[float], b: Sequence[float]) -> dict:
    """Paired t-test of a - b over seeds: `one_sample_test` of the differences."""
    return one_sample_test([float(x) - float(y) for x, y in zip(a, b)])


def _with_t_interval(out: dict, se: float, df: float) -> dict:
    """`out` (holding the difference as "mean") with its 95% Student-t interval, t and two-sided p."""
    half = t_quantile(0.975, df) * se
    t = out["mean"] / se
    out.update(ci95=[out["mean"] - half, out["mean"] + half], t=t, p=_two_sided_p(t, df))
    return out


def welch_test(a: Sequence[float], b: Sequence[float]) -> dict:
    """Welch's unpaired t-test of mean(a) - mean(b) (unequal variances, Welch-Satterthwaite degrees
    of freedom): the difference, its 95% interval, t, two-sided p, df. With fewer than 2 values on a
    side, or no spread on either, the interval and p are None."""
    a, b = [float(x) for x in a], [float(x) for x in b]
    out = {"mean": statistics.fmean(a) - statistics.fmean(b), "ci95": None, "t": None, "p": None, "df": None}
    if len(a) < 2 or len(b) < 2:
        return out
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    se = math.sqrt(va + vb)
    if se <= 1e-12 * max(1.0, abs(out["mean"])):
        return out
    out["df"] = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    return _with_t_interval(out, se, out["df"])
