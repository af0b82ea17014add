"""`lhl compare`: several methods and seeds of one sequence, then one comparison table and plot.

Each (method, seed) is an ordinary run folder (so finished runs are reused, killed ones resume);
the table holds mean ± std over seeds after the last phase, Δ against a reference method and
forgetting, written as `compare.md`, `compare.json` and `compare.png` under `<out>/<seq>/compare/`.
"""
from __future__ import annotations

import shlex
from pathlib import Path
from typing import Dict, List

from lhl.config import ConfigError, load_config
from lhl.core.io import atomic_write_json, atomic_write_text
from lhl.reporting.plots import plot_compare
from lhl.reporting.results import compare
from lhl.engine.runner import run


def _words(value: str) -> List[str]:
    return [w for w in shlex.split(value.replace(",", " ")) if w]


def cli(argv: List[str]) -> int:
    seq, methods, seeds, ref, rest = None, [], [None], None, []  # no seeds=: the preset's run.seed
    for arg in argv:
        key, _, value = arg.partition("=")
        if key == "seq":
            seq = value
        elif key == "methods":
            methods = _words(value)
        elif key == "seeds":
            seeds = _words(value)
        elif key == "ref":
            ref = value or None
        else:
            rest.append(arg)
    if not seq or not methods:
        raise ConfigError('compare: give seq=NAME and methods="m1 m2 ..." (seeds="0 1 2" optional)')
    if ref and ref not in methods:
        methods.append(ref)
    # every run's config is composed and checked before the first one trains
    configs = [(method, load_config([], [f"seq={seq}", f"method={method}", *([f"seed={seed}"] if seed is not None else []), *rest]))
               for method in methods for seed in seeds]
    runs: Dict[str, List[Path]] = {}
    for method, cfg in configs:
        print(f"\n##### compare: {seq} / {method} / seed {cfg.run.seed}", flush=True)
        runs.setdefault(method, []).append(run(cfg))
    out_dir = Path(configs[-1][1].run.out_dir) / seq / "compare"
    ref_dirs = runs.get(ref) if ref else None
    markdown, table = compare(runs, ref=ref_dirs)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "compare.md", markdown)
    atomic_write_json(out_dir / "compare.json", table)
    plot_compare(table, out_dir / "compare.png")
    print("\n" + markdown)
    print(f"comparison written to {out_dir}")
    return 0
