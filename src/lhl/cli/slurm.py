"""`lhl slurm [key=value ...]`: write (and submit) an sbatch script for a run (`lhl.tools.slurm`)."""
from __future__ import annotations

from typing import List

from lhl.cli.common import show_help


def cli(argv: List[str]) -> int:
    from lhl.tools.slurm import USAGE
    from lhl.tools.slurm import cli as slurm

    if show_help(USAGE, argv):
        return 0
    return slurm(argv)
