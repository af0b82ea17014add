"""The results matrix of a lifelong run: every seen task's metrics after every phase, saved
atomically as `results.json` (plus its Markdown, `results.md`) and loaded back.

A metric's direction comes from `meta["directions"]` ({task: {metric: higher_is_better}})
(docs/concepts/metrics.md); scores live in `scores.py`, rendering in `render.py`.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Union

from lhl.core.errors import MissingInput, UsageError
from lhl.core.io import atomic_write_json
from lhl.runs.folder import RESULTS_JSON


Metrics = Dict[str, Dict[str, float]]
PathLike = Union[str, Path]


def _num(v) -> float:
    """A stored metric as a float (None, as JSON null, is NaN)."""
    if v is None:
        return math.nan
    return float(v.item() if hasattr(v, "item") else v)


class Results:
    """Metadata plus one record per phase: `{"phase": i, "trained": [tasks], "metrics": {task: {metric: v}}}`.

    `meta` holds dataset, sequence, method, seed, tasks (the order), directions, main_metric and
    independent_phases (each phase trains a fresh model, as single_task does).
    """

    def __init__(self, meta: Optional[Mapping] = None, phases: Iterable[Mapping] = ()):
        self.meta = dict(meta or {})
        self.meta.setdefault("tasks", [])
        self.meta.setdefault("directions", {})
        self.meta.setdefault("main_metric", {})
        self.phases: List[dict] = []
        for p in phases:
            self.add_phase(p["phase"], p["trained"], p["metrics"], p.get("details"))

    @classmethod
    def from_specs(cls, specs: Sequence, *, dataset: str = "", sequence: str = "", method: str = "",
                   seed: int = 0, independent_phases: bool = False, **extra) -> "Results":
        """An empty matrix whose task order, directions and main metrics come from TaskSpecs;
        `independent_phases`: each phase trains a fresh model (its tasks are scored where trained)."""
        meta = dict(dataset=dataset, sequence=sequence, method=method, seed=seed,
                    tasks=[s.name for s in specs],
                    directions={s.name: dict(s.metric_directions) for s in specs},
                    main_metric={s.name: s.main_metric for s in specs},
                    independent_phases=bool(independent_phases), **extra)
        return cls(meta)

    # --- building -------------------------------------------------------------------------
    def add_phase(self, phase: int, trained: Union[str, Sequence[str]], metrics: Mapping,
                  details: Optional[Mapping] = None) -> None:
        """Record phase `phase`; a phase already present is replaced (a resumed run re-evaluates).
        `details`: {task: {name: [per-class values]}} beside the metrics (a semantic task's
        `class_iou`), kept only when given; no score reads them."""
        trained = [trained] if isinstance(trained, str) else list(trained)
        record = {"phase": int(phase), "trained": trained,
                  "metrics": {t: {m: _num(v) for m, v in ms.items()} for t, ms in metrics.items()}}
        if details:
            record["details"] = {t: {k: [_num(v) for v in vs] for k, vs in d.items()} for t, d in details.items()}
        self.phases = [p for p in self.phases if p["phase"] != record["phase"]] + [record]
        self.phases.sort(key=lambda p: p["phase"])
        for t in [*trained, *record["metrics"]]:
            if t not in self.meta["tasks"]:
                self.meta["tasks"].append(t)

    def note_machine(self, info: Mapping) -> None:
        """Add `info` (`lhl.core.machine.machine_info`) to `meta["machines"]` unless already there:
        one entry for a run made on one machine, more when a resume moved it."""
        machines = self.meta.setdefault("machines", [])
        if dict(info) not in machines:
            machines.append(dict(info))

    @property
    def machines(self) -> List[dict]:
        """The machines that made this run's phases (empty for runs recorded before lhl noted them)."""
        return list(self.meta.get("machines", []))

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

    def class_iou(self, task: str) -> List[Optional[List[float]]]:
        """`task`'s per-class IoU after each phase (`details`), None where not recorded."""
        return [p.get("details", {}).get(task, {}).get("class_iou") for p in self.phases]

    def class_names(self, task: str) -> Optional[List[str]]:
        """The dataset's class names of `task` (`meta["class_names"]`), None when unknown."""
        return self.meta.get("class_names", {}).get(task)

    def learned_phase(self, task: str) -> Optional[int]:
        """Index (into `phases`) of the last phase that trained `task`."""
        idx = [i for i, p in enumerate(self.phases) if task in p["trained"]]
        return idx[-1] if idx else None

    def to_dict(self) -> dict:
        return {"meta": self.meta, "phases": self.phases}

    # --- files ----------------------------------------------------------------------------
    def save(self, run_dir: PathLike) -> Path:
        """Write `results.json` atomically into `run_dir`; returns its path (its Markdown, `results.md`:
        `lhl.reporting.render.write_results`)."""
        return atomic_write_json(Path(run_dir) / RESULTS_JSON, self.to_dict())

    @classmethod
    def load(cls, path: PathLike) -> "Results":
        """Read a run folder's `results.json` (or the file itself); errors name the file."""
        path = Path(path)
        if path.is_dir():
            path = path / RESULTS_JSON
        if not path.is_file():
            raise MissingInput(f"{path}: no results file (expected a run folder holding {RESULTS_JSON})")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(data["meta"], data["phases"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as e:
            raise UsageError(f"{path}: malformed results file ({type(e).__name__}: {e}); "
                             "expected {'meta': {...}, 'phases': [{'phase', 'trained', 'metrics'}, ...]}") from e
