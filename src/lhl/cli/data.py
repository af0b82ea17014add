"""`lhl data synth | convert-nyuv2 | convert-cityscapes ...`: make a dataset on disk (the
generators and converters live in `lhl.data`); options as `--name value` or `name=value`."""
from __future__ import annotations

from typing import List

from lhl.cli.common import HELP_WORDS, dispatch

USAGE = """usage: lhl data <sub-command> [options]    (lhl data <sub-command> --help: its options)

sub-commands:
  synth --out DIR [--n-train N --n-val N --height H --width W --seed S]   a synthetic-rooms set (+ grid.png)
  convert-nyuv2 --mat F --splits F --out DIR                           the official NYUv2 .mat into the MTAN layout
  convert-cityscapes --src DIR --out DIR                               the official Cityscapes files into the MTAN layout

Options may also be written name=value (out=DIR n_train=240).
"""

SUBCOMMANDS = {
    "synth": "lhl.data.sources.synthetic:cli",
    "convert-nyuv2": "lhl.data.convert.nyuv2_mat:cli",
    "convert-cityscapes": "lhl.data.convert.cityscapes_official:cli",
}


def _options(argv: List[str]) -> List[str]:
    """These commands take no config keys: every `name=value` is an option, `--name value`."""
    out: List[str] = []
    for arg in argv:
        key, eq, value = arg.partition("=")
        if eq and not arg.startswith("-") and "." not in key and "/" not in key:
            out += [f"--{key.replace('_', '-')}", value]
        else:
            out.append(arg)
    return out


def cli(argv: List[str]) -> int:
    if argv and argv[0] not in HELP_WORDS:
        argv = argv[:1] + _options(argv[1:])
    return dispatch("data", SUBCOMMANDS, USAGE, argv)
