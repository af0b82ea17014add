"""The result of `lhl compare` as typed data: one `MethodSummary` per method inside a `Comparison`.

A statistic is the plain `{"mean", "std", "n"}` of `aggregate.mean_std`; a table of them is
`{task: {metric: statistic}}`. `Comparison.to_dict()` is the layout of `compare.json` (an optional
field that is unset is left out) and `Comparison.load` reads that file back.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

COMPARE_JSON = "compare.json"

Stat = Optional[Dict[str, Any]]
StatTable = Dict[str, Dict[str, Dict[str, Any]]]

#: fields written only when set (a comparison without a reference has no Δ pairing, ...)
_OPTIONAL = ("delta_pairing", "delta_per_seed", "delta_after_phases", "plasticity", "mean_rank", "paired_delta")


@dataclass
class MethodSummary:
    """One method over its seeds: its runs, final metrics and forgetting, and against the reference
    (when there is one) Δ overall, per task, per seed and after every phase."""

    runs: List[str]
    seeds: List[Any]
    final: StatTable
    forgetting: StatTable
    delta: Stat = None
    delta_per_task: Dict[str, Stat] = field(default_factory=dict)
    backward_transfer: Stat = None
    forgetting_rel: StatTable = field(default_factory=dict)
    delta_pairing: Optional[str] = None  # "seed": each run against the reference's of its seed; "mean"
    delta_per_seed: Optional[Dict[str, float]] = None
    delta_after_phases: Optional[List[Stat]] = None
    plasticity: Stat = None  # the new task's Δ right after its phase (paired with the reference)
    mean_rank: Optional[float] = None
    paired_delta: Optional[Dict[str, dict]] = None  # {anchor: paired test of Δ}

    def to_dict(self) -> Dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.name not in _OPTIONAL or getattr(self, f.name) is not None}


@dataclass
class Comparison:
    """Several methods on one sequence: the tasks and their metrics' directions and main metric, a
    `MethodSummary` per method, the machines the runs were made on, the reference (when Δ is
    computed) and the runs left out as unfinished."""

    tasks: List[str]
    directions: Dict[str, Dict[str, bool]]
    main_metric: Dict[str, str]
    methods: Dict[str, MethodSummary]
    machines: List[Any] = field(default_factory=list)
    reference: Optional[Dict[str, Any]] = None  # {"runs": [...], "final": {task: {metric: mean}}, "label"?}
    missing: Optional[List[str]] = None

    def to_dict(self) -> Dict[str, Any]:
        out = {"tasks": self.tasks, "directions": self.directions, "main_metric": self.main_metric,
               "methods": {n: m.to_dict() for n, m in self.methods.items()}, "machines": self.machines,
               "reference": self.reference}
        if self.missing is not None:
            out["missing"] = self.missing
        return out

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "Comparison":
        known = {f.name for f in dataclasses.fields(MethodSummary)}
        methods = {n: MethodSummary(**{k: v for k, v in e.items() if k in known})
                   for n, e in data["methods"].items()}
        return cls(data["tasks"], data["directions"], data["main_metric"], methods,
                   data.get("machines", []), data.get("reference"), data.get("missing"))

    @classmethod
    def load(cls, path: Union[str, Path]) -> "Comparison":
        """A `compare.json` (or the folder holding it)."""
        path = Path(path)
        if path.is_dir():
            path = path / COMPARE_JSON
        return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))
