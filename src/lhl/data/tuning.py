"""The tuning stream: the data `lhl tune` selects on, never the reported split.

`data.stream=tune` changes what a run trains and evaluates on, in one of two ways:

- a dataset with a generator (one that defines `tuning_options`, as synthetic rooms) makes a
  tuning variant of itself: the same distributions, other views, from other generator seeds. The
  phase slices keep their size, so a weight tuned there is tuned for the reported runs' amount of
  data;
- any other dataset (NYUv2, Cityscapes, Taskonomy, ...) holds out `data.val_fraction` of every
  phase's train slice (drawn with `data.split_seed`) and evaluates on those held-out train images,
  which carry every task's labels; the phases train on the rest. The val split is never opened.
"""
from __future__ import annotations

from typing import List, Tuple

import numpy as np

from lhl.data.protocol import phase_slices

STREAMS = ("report", "tune")


def stream_of(data_cfg) -> str:
    stream = str(data_cfg.get("stream", "report") if hasattr(data_cfg, "get") else getattr(data_cfg, "stream", "report"))
    if stream not in STREAMS:
        raise ValueError(f"data.stream={stream!r}: choose one of {', '.join(STREAMS)} "
                         "(tune: the tuning stream of `lhl tune`, report: the reported split)")
    return stream


def generates_tuning_views(cls) -> bool:
    """Whether the dataset makes its own tuning variant (else the held-out train images are used)."""
    return hasattr(cls, "tuning_options")


def stream_options(cls, options: dict, data_cfg) -> dict:
    """`data.options` of the stream: a generator's tuning variant under stream=tune, else unchanged."""
    if stream_of(data_cfg) == "tune" and generates_tuning_views(cls):
        return cls.tuning_options(dict(options))
    return dict(options)


def held_out(n: int, num_slices: int, fraction: float, shuffle_split: bool = False,
             split_seed: int = 0) -> Tuple[List[int], List[int]]:
    """(kept, held): the train indices that stay train, and `fraction` of every phase slice held out
    as the tuning evaluation set (at least one per slice, at least one kept), both sorted."""
    if not 0.0 < float(fraction) < 1.0:
        raise ValueError(f"data.val_fraction={fraction}: give the held-out share of each phase's "
                         "train slice, a number between 0 and 1 (e.g. 0.1)")
    rng = np.random.default_rng([int(split_seed), 104729])
    held: List[int] = []
    for s in phase_slices(n, num_slices, shuffle_split, split_seed):
        k = min(max(1, int(round(fraction * len(s)))), len(s) - 1)
        if k < 1:
            raise ValueError(f"data.val_fraction: a phase slice of {len(s)} train image(s) cannot lose one "
                             "to the tuning set; use more images or data.stream=report")
        held.extend(int(i) for i in rng.choice(s, size=k, replace=False))
    held_set = set(held)
    return [i for i in range(n) if i not in held_set], sorted(held)
