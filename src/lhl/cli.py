"""The `lhl` command: run, compare, report, data, distill, bench, slurm.

Every Make target is a thin wrapper over one of these sub-commands.
"""
from __future__ import annotations

import importlib
import sys
from typing import List

USAGE = """usage: lhl <command> [args]

commands:
  run [CONFIG.yaml ...] [key=value ...]   a lifelong run (seq=NAME method=NAME seed=N gpus=N ...)
  compare [key=value ...]                 several methods and seeds of one sequence, one table
  report RUN [--ref RUN] [--json OUT]     results, delta and forgetting of a run folder
  data synth --out DIR [...]              write a synthetic-rooms set (+ grid.png)
  data convert-nyuv2 --mat F --splits F --out DIR
  data convert-cityscapes --src DIR --out DIR
  distill [--kd ...] [key=value ...]      cross-architecture distillation (HeteroAKD and baselines)
  bench [--out FILE] [...]                training-step throughput of finetune / LwF / HAD
  bench-e2e [--seq S --method M] [k=v]    a whole sequence timed as lhl runs it and as the release does
  slurm [key=value ...]                   write (and submit) an sbatch script
"""

#: sub-command -> "module:function" taking argv and returning an exit code
COMMANDS = {
    "run": "lhl.cli:run_main",
    "compare": "lhl.tools.compare:cli",
    "report": "lhl.reporting.results:cli",
    "distill": "lhl.distill.cli:cli",
    "bench": "lhl.tools.bench:cli",
    "bench-e2e": "lhl.tools.bench_e2e:cli",
    "slurm": "lhl.tools.slurm:cli",
}
DATA_COMMANDS = {
    "synth": "lhl.data.sources.synthetic:cli",
    "convert-nyuv2": "lhl.data.convert.nyuv2_mat:cli",
    "convert-cityscapes": "lhl.data.convert.cityscapes_official:cli",
}


def _resolve(target: str):
    module, func = target.split(":")
    return getattr(importlib.import_module(module), func)


def run_main(argv: List[str]) -> int:
    from lhl.config import load_config
    from lhl.engine.runner import run

    files = [a for a in argv if a.endswith((".yaml", ".yml")) and "=" not in a]
    overrides = [a for a in argv if a not in files]
    cfg = load_config(files, overrides)
    run_dir = run(cfg)
    from lhl.reporting.results import Results, render_markdown

    print("\n" + render_markdown(Results.load(run_dir)))
    print(f"run folder: {run_dir}")
    return 0


def _quiet_library_noise() -> None:
    """Drop two messages a user can do nothing about: Lightning's advertising tip at every Trainer
    and its own deprecation warning on newer torch (lightning/pytorch/utilities/_pytree.py)."""
    import logging
    import warnings

    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated")
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(
        lambda record: not str(record.getMessage()).startswith("💡 Tip")
    )


def main(argv: List[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    _quiet_library_noise()
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    cmd, rest = argv[0], argv[1:]
    if cmd == "data":
        if not rest or rest[0] not in DATA_COMMANDS:
            print(USAGE, file=sys.stderr)
            return 2
        target, rest = DATA_COMMANDS[rest[0]], rest[1:]
    elif cmd in COMMANDS:
        target = COMMANDS[cmd]
    else:
        print(f"lhl: unknown command '{cmd}'\n\n{USAGE}", file=sys.stderr)
        return 2
    from lhl.config import ConfigError

    try:
        return int(_resolve(target)(rest) or 0)
    except (ConfigError, FileNotFoundError, KeyError, ValueError) as err:
        msg = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"lhl {cmd}: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
