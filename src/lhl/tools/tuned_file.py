"""`tuned.yaml`: what `lhl tune` chose, and what `lhl compare` / `lhl paper` take (`tuned=FILE`).

    sequence: synthetic_s1
    methods:
      lwf:
        option: new                      # the method's stability knob (`Method.stability`)
        chosen: 1.0
        overrides: [method.new=1.0]      # what compare adds to every run of the method
        objective: delta                 # declared before the grid ran (reporting.tuning)
        stream: tune                     # the data it was chosen on: never the reported split
        seeds: [100, 101]                # tuning seeds
        points: [{value, seeds, delta, plasticity, stability}, ...]   # mean, std, n over seeds
        grid: [0.0, 0.3, 1.0, 3.0, 10.0] # the default grid, plus any widening
        widened: [30.0]
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Mapping, Union

import yaml

from lhl.config import ConfigError
from lhl.core.io import atomic_write_text

PathLike = Union[str, Path]


def load(path: PathLike) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"tuned={path}: no such file (write one with `lhl tune seq=... methods=...`, "
                          "which prints where it wrote it)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"tuned={path}: not valid YAML ({err})") from None
    methods = data.get("methods") if isinstance(data, dict) else None
    if not isinstance(methods, dict):
        raise ConfigError(f"tuned={path}: no 'methods:' mapping (method -> chosen values); is it a tuned.yaml "
                          "written by `lhl tune`?")
    for name, entry in methods.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("overrides"), list):
            raise ConfigError(f"tuned={path}: methods.{name}.overrides: a list of key=value overrides is expected")
        if entry.get("stream") != "tune":
            raise ConfigError(f"tuned={path}: methods.{name} was not chosen on the tuning stream "
                              f"(stream: {entry.get('stream')!r}); only `lhl tune` output is accepted")
    return data


def overrides_for(data: Mapping, sequence: str, path: PathLike = "tuned.yaml") -> Dict[str, List[str]]:
    """{method: overrides} of a loaded tuned.yaml, checked against the comparison's sequence."""
    seq = data.get("sequence")
    if seq is not None and sequence is not None and seq != sequence:
        raise ConfigError(f"tuned={path}: its weights were chosen for sequence {seq!r}, not {sequence!r}; "
                          f"tune that sequence first (lhl tune seq={sequence} ...)")
    return {name: [str(o) for o in entry["overrides"]] for name, entry in data["methods"].items()}


def merge_into(path: PathLike, sequence: str, entries: Mapping[str, dict]) -> Path:
    """Write `entries` into `path` (atomically), keeping the other methods already there."""
    path = Path(path)
    data = {"sequence": sequence, "methods": {}}
    if path.is_file():
        old = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if old.get("sequence") == sequence:
            data["methods"] = dict(old.get("methods") or {})
    data["methods"].update({k: dict(v) for k, v in entries.items()})
    data["methods"] = dict(sorted(data["methods"].items()))
    return atomic_write_text(path, yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=110))
