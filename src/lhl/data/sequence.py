"""A Sequence: a dataset, its ordered tasks, and the disjoint train slices of the phases."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Tuple

import numpy as np


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


@dataclass
class Sequence:
    """What a lifelong run is over: dataset name, ordered task names and their (kind, channels)."""

    name: str
    dataset: str
    tasks: List[str]
    task_info: Dict[str, Tuple[str, int]]

    def __post_init__(self):
        missing = [t for t in self.tasks if t not in self.task_info]
        if missing:
            raise ValueError(
                f"sequence.tasks: {missing} not offered by dataset '{self.dataset}' "
                f"(it has {sorted(self.task_info)})"
            )
