"""`lhl tune [key=value ...]`: each method's stability weight chosen on the tuning stream (orchestration: `lhl.tools.tune`)."""
from __future__ import annotations

from typing import List

from lhl.cli.common import show_help


def cli(argv: List[str]) -> int:
    from lhl.tools.tune import USAGE
    from lhl.tools.tune import cli as tune

    if show_help(USAGE, argv):
        return 0
    return tune(argv)
