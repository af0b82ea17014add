"""Print, as JSON, `lhl --help`, every command's `--help` and `lhl list`, from one process.

Run by the docs hook in a subprocess (`python docs/hooks/cli_help.py`), so the docs build itself
never imports torch. The command list is read from `lhl --help`, not written here.
"""
from __future__ import annotations

import contextlib
import io
import json
import re
import sys


def _call(main, argv):
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            main(list(argv))
        except SystemExit:
            pass
    return out.getvalue().rstrip() + "\n"


def commands(usage: str):
    """`run`, `list`, ..., `data synth`, and one entry per alternative of a group line
    (`dev bench|bench-e2e` gives `dev bench`, `dev bench-e2e`): the indented lines under `commands:`."""
    found, inside = [], False
    for line in usage.splitlines():
        if line.strip() == "commands:":
            inside = True
            continue
        if inside and not line.startswith("  "):
            if line.strip():
                break
            continue
        if inside:
            words = line.split()
            names = [words[0]]
            if len(words) > 1 and re.fullmatch(r"[a-z][a-z0-9-]*(\|[a-z][a-z0-9-]*)+", words[1]):
                names = [f"{words[0]} {sub}" for sub in words[1].split("|")]
            elif words[0] == "data" and len(words) > 1:
                names = [f"data {words[1]}"]
            for name in names:
                if re.fullmatch(r"[a-z][a-z0-9-]*( [a-z][a-z0-9-]*)?", name) and name not in found:
                    found.append(name)
    return found


def main() -> None:
    from lhl.cli import main as lhl_main

    usage = _call(lhl_main, ["--help"])
    helps = {cmd: _call(lhl_main, cmd.split() + ["--help"]) for cmd in commands(usage)}
    listing = _call(lhl_main, ["list"])
    json.dump({"usage": usage, "commands": helps, "list": listing}, sys.stdout)


if __name__ == "__main__":
    main()
