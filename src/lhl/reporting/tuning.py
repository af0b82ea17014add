"""What `lhl tune` reads of each grid run, and how it selects: pure functions of Results.

Per run, against the finetune run of the same seed on the same (tuning) stream:

- `delta`: the final Δ (%) of every task (`scores.delta`), the default objective;
- `plasticity`: the new task's Δ (%) right after the phase that learned it, over the phases after
  the first (the first phase trains every method alike), against finetune right after the same
  phase. Finetune is the most plastic learner, so this is De Lange et al.'s plasticity loss (and,
  with its sign turned, RWalk's intransigence measured against finetune rather than a joint model);
- `stability`: relative backward transfer (%, `ranks.backward_transfer`; > 0 improved since learned);
- `forgetting`: per old task, its main metric's forgetting in % of its value when learned.

Objectives (declared before anything runs):

- `delta` (default): the grid value with the highest mean Δ over the tuning seeds;
- `plasticity_decay` (De Lange et al., arXiv 1909.08383): from the most stable value down, the
  first whose mean plasticity loss stays within `p` (a fraction, default 0.2) of finetune, i.e.
  plasticity >= -100 p %; the finetune end when none does.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence

from lhl.reporting.ranks import backward_transfer
from lhl.runs.results import Results
from lhl.reporting.scores import delta, forgetting, mean_std, relative_gain

OBJECTIVES = ("delta", "plasticity_decay")


def _by_seed(refs: Sequence[Results]) -> Dict[object, Results]:
    return {r.meta.get("seed"): r for r in refs}


def new_task_delta(run: Results, ref: Results) -> Optional[float]:
    """Mean over the phases after the first of the trained tasks' Δ (%) right after that phase,
    against `ref` right after the same phase; None for a one-phase run."""
    gains = []
    for i, p in enumerate(run.phases[1:], start=1):
        if i >= len(ref.phases):
            break
        for t in p["trained"]:
            ours, base = p["metrics"].get(t, {}), ref.phases[i]["metrics"].get(t, {})
            common = [m for m in ours if m in base]
            if common:
                gains.append(100.0 * sum(relative_gain(ours[m], base[m], run.higher_is_better(t, m), f"{t}/{m}")
                                         for m in common) / len(common))
    return sum(gains) / len(gains) if gains else None


@dataclass
class PointScores:
    """One grid value's runs, scored seed by seed against finetune."""

    value: float
    seeds: List[object] = field(default_factory=list)
    delta: List[float] = field(default_factory=list)
    plasticity: List[float] = field(default_factory=list)
    stability: List[float] = field(default_factory=list)
    #: per task learned before the last phase: its main metric's forgetting, % of its learned value
    forgetting: Dict[str, List[float]] = field(default_factory=dict)

    @staticmethod
    def _mean_std(xs: Sequence[float]) -> dict:
        return mean_std(xs) if xs else {"mean": None, "std": None, "n": 0}

    def summary(self) -> dict:
        return {"value": self.value, "seeds": list(self.seeds), "delta": self._mean_std(self.delta),
                "plasticity": self._mean_std(self.plasticity), "stability": self._mean_std(self.stability),
                "forgetting": {t: self._mean_std(v) for t, v in self.forgetting.items()}}


def score_point(value: float, runs: Sequence[Results], refs: Sequence[Results]) -> PointScores:
    """Scores of one grid value's runs; each run needs the finetune run of its own seed."""
    ref = _by_seed(refs)
    out = PointScores(value=float(value))
    for r in sorted(runs, key=lambda r: str(r.meta.get("seed"))):
        seed = r.meta.get("seed")
        if seed not in ref:
            raise KeyError(f"no finetune run of seed {seed} on the tuning stream to score against")
        out.seeds.append(seed)
        out.delta.append(delta(r, ref[seed]))
        out.plasticity.append(new_task_delta(r, ref[seed]) or 0.0)
        bwt = backward_transfer(r)
        out.stability.append(0.0 if bwt is None else bwt)
        for t, ms in forgetting(r, relative=True).items():
            main = r.main_metric(t)
            if main in ms:
                out.forgetting.setdefault(t, []).append(float(ms[main]))
    return out


def select(points: Sequence[Mapping], objective: str = "delta", p: float = 0.2) -> float:
    """The chosen grid value of `points` (summaries, any order) under `objective`."""
    if objective not in OBJECTIVES:
        raise ValueError(f"objective={objective!r}: choose one of {', '.join(OBJECTIVES)}")
    pts = sorted(points, key=lambda s: s["value"])
    if not pts:
        raise ValueError("select: no grid point has finished runs")
    if objective == "delta":
        best = max(pts, key=lambda s: (s["delta"]["mean"], -s["value"]))  # ties: the more plastic value
        return best["value"]
    for s in reversed(pts):  # from the most stable value down
        if s["plasticity"]["mean"] >= -100.0 * p:
            return s["value"]
    return pts[0]["value"]


def on_edge(points: Sequence[Mapping], chosen: float) -> Optional[str]:
    """'stable' when the chosen value is the grid's most stable, 'plastic' when it is the first
    after the finetune end, else None."""
    values = sorted(s["value"] for s in points)
    if len(values) >= 2 and chosen == values[-1]:
        return "stable"
    if len(values) >= 3 and chosen == values[1]:
        return "plastic"
    return None


def non_dominated(points: Sequence[Mapping]) -> List[float]:
    """The values whose (plasticity, stability) means no other point beats on both (ties kept)."""
    means = [(s["value"], s["plasticity"]["mean"], s["stability"]["mean"]) for s in points]
    out = []
    for v, x, y in means:
        if not any((x2 >= x and y2 >= y) and (x2 > x or y2 > y) for _, x2, y2 in means):
            out.append(v)
    return out
