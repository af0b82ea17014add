"""`lhl compare [key=value ...]`: several methods and seeds of one sequence, one table (orchestration: `lhl.tools.compare`)."""
from __future__ import annotations

from typing import List

from lhl.cli.common import show_help


def cli(argv: List[str]) -> int:
    from lhl.tools.compare import USAGE
    from lhl.tools.compare import cli as compare

    if show_help(USAGE, argv):
        return 0
    return compare(argv)
