"""What every `lhl` command shares: its help, and the one form of its options.

Config overrides are `key.path=value` (dotted keys of the schema). A command's own options are
`name=value` too (`ref=RUN`, `out=FILE`, `seeds="0 1 2"`); commands parsed by argparse also take
the older `--name value` spelling, which `flags` maps the `name=value` form onto.
"""
from __future__ import annotations

import importlib
import sys
from typing import Callable, Iterable, List, Mapping

HELP_WORDS = ("-h", "--help", "help")


def wants_help(argv: Iterable[str]) -> bool:
    return any(a in HELP_WORDS for a in argv)


def show_help(usage: str, argv: Iterable[str]) -> bool:
    """Print `usage` and return True when `argv` asks for help (every command's --help)."""
    if wants_help(argv):
        print(usage.rstrip() + "\n")
        return True
    return False


def flags(argv: Iterable[str], names: Iterable[str]) -> List[str]:
    """`name=value` for one of the command's own options `names` becomes `--name value` (a dash in
    the flag for an underscore in the key); everything else is passed on unchanged."""
    wanted = {n.replace("-", "_"): n.replace("_", "-") for n in names}
    out: List[str] = []
    for arg in argv:
        key, eq, value = arg.partition("=")
        if eq and key.replace("-", "_") in wanted and not arg.startswith("-"):
            out += [f"--{wanted[key.replace('-', '_')]}", value]
        else:
            out.append(arg)
    return out


def load(target: str) -> Callable[[List[str]], int]:
    """The function named by "module:function"."""
    module, func = target.split(":")
    return getattr(importlib.import_module(module), func)


def dispatch(group: str, table: Mapping[str, str], usage: str, argv: List[str]) -> int:
    """`lhl <group> <sub-command> ...`: the sub-command's function, or the group's usage."""
    if not argv or argv[0] not in table:
        asked = bool(argv) and argv[0] in HELP_WORDS
        if argv and not asked:
            print(f"lhl {group}: unknown sub-command '{argv[0]}'\n", file=sys.stderr)
        print(usage.rstrip() + "\n", file=sys.stdout if asked else sys.stderr)
        return 0 if asked else 2
    return int(load(table[argv[0]])(argv[1:]) or 0)
