"""`lhl paper [key=value ...]`: the paper's tables: runs, compare, Markdown / CSV / LaTeX (orchestration: `lhl.tools.paper`)."""
from __future__ import annotations

from typing import List

from lhl.cli.common import show_help


def cli(argv: List[str]) -> int:
    from lhl.tools.paper import USAGE
    from lhl.tools.paper import cli as paper

    if show_help(USAGE, argv):
        return 0
    return paper(argv)
