"""`lhl list`: what a config can name (sequences, method presets, methods, datasets and their
options, task types, backbones, kd presets, segmenters, distillers), read without loading torch."""
from __future__ import annotations

from typing import List

from lhl.cli.common import show_help
from lhl.config import experiments_dir
from lhl.tools.listing import sections

USAGE = """usage: lhl list [--experiments DIR]

Sequences (seq=), method presets (method=) and registered methods, datasets and their options,
task types, backbones known to work, and for lhl distill the kd presets, segmenters and distillers.
"""


def cli(argv: List[str]) -> int:
    if show_help(USAGE, argv):
        return 0
    print(f"presets: {experiments_dir()}")
    for heading, lines in sections().items():
        print(f"\n{heading}:")
        for line in lines:
            print(f"  {line}")
    return 0
