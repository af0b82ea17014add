"""Multirun: `-m key=v1,v2,...` (one run per value; several keys: every combination) and the
`sweep=key=v1,v2` of `lhl compare`, expanded into plain `key=value` override lists."""
from __future__ import annotations

import itertools
from typing import List, Sequence, Tuple

from lhl.config.compose import ConfigError


def split_values(text: str) -> List[str]:
    """`1,3,10` -> ['1', '3', '10']; commas inside [...] or {...} stay (`[1,2],[3,4]`: two values)."""
    out, depth, cur = [], 0, ""
    for ch in text:
        depth += ch in "[{("
        depth -= ch in "]})"
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    out.append(cur)
    return [v.strip() for v in out if v.strip()]


def parse_sweep(item: str, where: str = "-m") -> Tuple[str, List[str]]:
    """`key=v1,v2` -> (key, [v1, v2])."""
    key, sep, values = item.partition("=")
    if not sep or not key or not split_values(values):
        raise ConfigError(f"{where} {item!r}: write key=v1,v2,... (e.g. -m method.new=1,3,10)")
    return key, split_values(values)


def split_multirun(argv: Sequence[str]) -> Tuple[List[str], List[Tuple[str, List[str]]]]:
    """(the other arguments, [(key, values)]) from `-m key=v1,v2` / `--multirun key=v1,v2` pairs."""
    rest, sweeps, args = [], [], list(argv)
    while args:
        arg = args.pop(0)
        if arg in ("-m", "--multirun"):
            if not args:
                raise ConfigError(f"{arg} needs key=v1,v2,... after it (e.g. -m method.new=1,3,10)")
            sweeps.append(parse_sweep(args.pop(0), arg))
        else:
            rest.append(arg)
    return rest, sweeps


def expand(base: Sequence[str], sweeps: Sequence[Tuple[str, List[str]]]) -> List[List[str]]:
    """One override list per combination of the swept values, in order (the base alone without sweeps)."""
    keys = [k for k, _ in sweeps]
    return [[*base, *(f"{k}={v}" for k, v in zip(keys, combo))]
            for combo in itertools.product(*(vals for _, vals in sweeps))]
