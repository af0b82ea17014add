"""The protocol of a lifelong run, resolved once: which tasks each phase trains, distils and
evaluates, on which disjoint slice of the train set, and whether it starts from a new network.

A method states what it wants per phase (`PhaseRequest`: tasks, slice, fresh model, evaluated
tasks); `resolve_plan` turns that into the `Phase` list every other part reads (the datamodule,
the methods, the LightningModule, the runner). Nothing recomputes seen / old / evaluated tasks.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np


@dataclass(frozen=True)
class PhaseRequest:
    """What a method asks of one phase; `eval_tasks=None` means every task seen so far."""

    tasks: Tuple[str, ...]
    slice: Optional[int]  # index of the disjoint train slice; None = the whole train set
    fresh_model: bool = False  # single-task references start from a new network
    eval_tasks: Optional[Tuple[str, ...]] = None


@dataclass(frozen=True)
class Phase:
    """One resolved phase.

    train_tasks: the tasks whose labels this phase uses; old_tasks: tasks learned before on the
    same network (the teacher's heads); eval_tasks: evaluated on the val set after the phase;
    slice: the train slice (None = the whole set); fresh_model: start from a new network;
    upgrade: the student becomes a new network of another architecture here (`model.upgrade_at`),
    with heads for every seen task, and the old network is its teacher.
    """

    index: int
    train_tasks: Tuple[str, ...]
    old_tasks: Tuple[str, ...] = ()
    eval_tasks: Tuple[str, ...] = ()
    slice: Optional[int] = None
    fresh_model: bool = False
    upgrade: bool = False

    @property
    def seen_tasks(self) -> Tuple[str, ...]:
        """Every task with a head on this phase's network: the old ones, then the new ones."""
        return self.old_tasks + tuple(t for t in self.train_tasks if t not in self.old_tasks)


def sequential(order: Sequence[str]) -> List[PhaseRequest]:
    """The lifelong protocol: phase t trains task t alone on train slice t."""
    return [PhaseRequest(tasks=(t,), slice=i) for i, t in enumerate(order)]


def resolve_plan(requests: Sequence[PhaseRequest], upgrade_at: Optional[int] = None) -> List[Phase]:
    """Phases with their old and evaluated tasks: a fresh model forgets what came before it;
    phase `upgrade_at` (when given) is the one whose student is a new architecture."""
    phases: List[Phase] = []
    seen: List[str] = []
    for i, req in enumerate(requests):
        if req.fresh_model:
            seen = []
        old = tuple(t for t in seen if t not in req.tasks)
        seen += [t for t in req.tasks if t not in seen]
        evaluated = tuple(req.eval_tasks) if req.eval_tasks is not None else tuple(seen)
        phases.append(Phase(i, tuple(req.tasks), old, evaluated, req.slice, req.fresh_model, i == upgrade_at))
    return phases


def phase_slices(n: int, num_slices: int, shuffle: bool = False, seed: int = 0) -> List[np.ndarray]:
    """Cut train indices 0..n-1 into `num_slices` disjoint, near-equal, contiguous slices.

    With `shuffle` the indices are permuted first (fixed by `seed`), as `shuffle_split: true`.
    """
    if num_slices < 1:
        raise ValueError("phase_slices: need at least one slice")
    if n < num_slices:
        raise ValueError(
            f"the train set has {n} samples, fewer than the {num_slices} phases of the sequence"
        )
    idx = np.arange(n)
    if shuffle:
        idx = np.random.default_rng(seed).permutation(n)
    return [s.copy() for s in np.array_split(idx, num_slices)]


def phase_seed(seed: int, phase: int) -> int:
    """A seed for (run seed, phase) whose streams do not overlap other runs' (unlike seed + phase)."""
    return int(np.random.SeedSequence([int(seed), int(phase) + 1]).generate_state(1)[0])
