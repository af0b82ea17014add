"""The `lhl` command: one module per command under this package (`lhl.cli.<command>`), each thin:
it parses its arguments and calls into the layers below (`lhl.engine`, `lhl.tools`,
`lhl.reporting`, `lhl.distill`, `lhl.data`). `COMMANDS` is the dispatch table.

One convention for every command: config overrides are `key.path=value`; a command's own options
are `name=value` (the argparse-based commands also take `--name value`); `--help` on any command
prints its usage (`lhl.cli.common`). Only a usage or configuration error is one line with exit
code 2; anything raised later keeps its traceback. Every Make target is a thin wrapper over one of
these commands.
"""
from __future__ import annotations

import sys
from typing import List

from lhl.cli.common import HELP_WORDS, load

USAGE = """usage: lhl [--experiments DIR] <command> [args]    (lhl <command> --help: its own help)

commands:
  run [CONFIG.yaml ...] [key=value ...]   a lifelong run (seq=NAME method=NAME seed=N gpus=N ...)
  list                                    sequences, method presets, datasets, tasks, backbones, kd
  runs [OUT_DIR]                          run folders: sequence, method, overrides, seeds, phases
  compare [key=value ...]                 several methods and seeds of one sequence, one table
  tune seq=... methods="..." [seeds=...]  each method's stability weight, chosen on the tuning stream
  paper table=main|ablation seq=... [seeds=...]   the paper's tables (runs + compare + md/csv/tex)
  report RUN [ref=RUN] [json=OUT]         results, delta and forgetting of a run folder
  curves RUN.. [short=RUN] [out=FILE]     learning curves within each phase (eval.every_n_epochs)
  data synth out=DIR [...]                write a synthetic-rooms set (+ grid.png)
  data convert-nyuv2 mat=F splits=F out=DIR
  data convert-cityscapes src=DIR out=DIR
  distill [kd=...] [key=value ...]        cross-architecture distillation (HeteroAKD and baselines)
  slurm [key=value ...]                   write (and submit) an sbatch script
  dev bench|bench-e2e|release-parity|distill-study [...]   developer measurements

Config overrides are key.path=value; a command's own options are name=value (or --name value).
--experiments DIR: read presets (seq/, method/, kd/, slurm/) from DIR instead of the installed
ones (or set LHL_EXPERIMENTS=DIR).
"""

#: command -> "module:function" taking argv and returning an exit code
COMMANDS = {name: f"lhl.cli.{module}:cli" for name, module in {
    "run": "run", "list": "listing", "runs": "runs", "compare": "compare", "tune": "tune", "paper": "paper",
    "report": "report", "curves": "curves", "data": "data", "distill": "distill", "slurm": "slurm", "dev": "dev",
}.items()}
#: the developer measurements' older spellings (`lhl bench` is `lhl dev bench`)
DEV_ALIASES = ("bench", "bench-e2e", "release-parity", "distill-study")


def _quiet_library_noise() -> None:
    """Drop two messages a user can do nothing about: Lightning's advertising tip at every Trainer
    and its own deprecation warning on newer torch (lightning/pytorch/utilities/_pytree.py)."""
    import logging
    import warnings

    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated")
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(
        lambda record: not str(record.getMessage()).startswith("💡 Tip")
    )


def _experiments_flag(argv: List[str]) -> List[str]:
    """`--experiments DIR` (anywhere): a user folder of presets, passed on as LHL_EXPERIMENTS."""
    import os

    out = []
    while argv:
        arg = argv.pop(0)
        if arg == "--experiments" and argv:
            os.environ["LHL_EXPERIMENTS"] = os.path.abspath(argv.pop(0))
        elif arg.startswith("--experiments="):
            os.environ["LHL_EXPERIMENTS"] = os.path.abspath(arg.split("=", 1)[1])
        else:
            out.append(arg)
    return out


def main(argv: List[str] | None = None) -> int:
    argv = _experiments_flag(list(sys.argv[1:] if argv is None else argv))
    if not argv or argv[0] in HELP_WORDS:
        print(USAGE)
        return 0
    cmd, rest = argv[0], argv[1:]
    if cmd in DEV_ALIASES:
        cmd, rest = "dev", argv
    if cmd not in COMMANDS:
        print(f"lhl: unknown command '{cmd}'\n\n{USAGE}", file=sys.stderr)
        return 2
    _quiet_library_noise()
    from lhl.core.errors import USER_ERRORS

    try:
        return int(load(COMMANDS[cmd])(rest) or 0)
    except USER_ERRORS as err:  # what the user typed or pointed at: one line; anything else keeps its traceback
        print(f"lhl {argv[0]}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
