"""Paired differences of Δ between methods over seeds, with a 95 % Student-t interval.

Two methods run on the same seeds share the seed's data order and initialisation, so the per-seed
difference of their Δ removes much of the seed-to-seed spread both share: the interval of
`mean(d) ± t_{0.975, n-1} · sd(d) / sqrt(n)`, d_s = Δ_method,s − Δ_anchor,s, says whether the
method beats the anchor beyond seed noise (the interval excludes 0): `ranks.paired_test`, which
`lhl paper` also runs against had_paper.
"""
from __future__ import annotations

from typing import Dict, Mapping, Optional, Sequence

from lhl.reporting.comparison import MethodSummary
from lhl.reporting.ranks import paired_test

#: the anchors every comparison is paired against, when they are among the compared methods
ANCHORS = ("had", "lwf")


def paired_against(methods: Mapping[str, MethodSummary], against: str) -> Dict[str, Optional[dict]]:
    """{method: `ranks.paired_test` of its per-seed Δ minus `against`'s, over the seeds both have}
    (None for `against` itself and for methods sharing no seed with it)."""
    base = (methods[against].delta_per_seed if against in methods else None) or {}
    out = {}
    for name, e in methods.items():
        mine = e.delta_per_seed or {}
        seeds = [s for s in mine if s in base]
        out[name] = None if name == against or not seeds else paired_test([mine[s] for s in seeds],
                                                                           [base[s] for s in seeds])
    return out


def paired_deltas(methods: Mapping[str, MethodSummary], anchors: Sequence[str] = ANCHORS) -> Dict[str, Dict[str, dict]]:
    """{method: {anchor: paired test}} for every anchor among `methods` that has per-seed Δ."""
    out: Dict[str, Dict[str, dict]] = {}
    for anchor in anchors:
        if anchor not in methods or not methods[anchor].delta_per_seed:
            continue
        for name, test in paired_against(methods, anchor).items():
            if test is not None:
                out.setdefault(name, {})[anchor] = test
    return out
