"""mkdocs hook: the reference pages generated at build time, never written twice.

- reference/cli.md: `lhl --help` and every command's `--help` (the command list read from
  `lhl --help`), from one subprocess (`cli_help.py`), cached under `.cache/docs/` by a digest of
  the package and the presets, so a rebuild with unchanged sources imports nothing;
- reference/presets.md: `lhl list` (same subprocess);
- reference/config.md: every key of the typed schemas (`lhl run`'s and `lhl distill`'s), parsed
  from their source with the comment beside each key;
- reference/makefile.md: `make help`, the targets and variables of the Makefile.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

from mkdocs.structure.files import File

sys.path.insert(0, str(Path(__file__).parent))
import schema_table  # noqa: E402

log = logging.getLogger("mkdocs.hooks.reference")
ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache" / "docs"


def _digest() -> str:
    h = hashlib.sha256()
    for base in ("src/lhl", "experiments"):
        for p in sorted((ROOT / base).rglob("*")):
            if p.is_file() and p.suffix in (".py", ".yaml", ".sbatch"):
                h.update(str(p.relative_to(ROOT)).encode())
                h.update(p.read_bytes())
    h.update(Path(sys.executable).name.encode())
    return h.hexdigest()[:16]


def cli_outputs() -> dict:
    """{"usage", "commands": {cmd: help}, "list"}: from the cache when the sources are unchanged."""
    cached = CACHE / f"cli-{_digest()}.json"
    if cached.is_file():
        return json.loads(cached.read_text())
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    proc = subprocess.run([sys.executable, str(Path(__file__).parent / "cli_help.py")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"docs/hooks/cli_help.py failed:\n{proc.stderr[-3000:]}")
    data = json.loads(proc.stdout)
    if not data["commands"]:
        raise RuntimeError("no command found under 'commands:' in `lhl --help`")
    CACHE.mkdir(parents=True, exist_ok=True)
    for old in CACHE.glob("cli-*.json"):
        old.unlink(missing_ok=True)  # another build may be cleaning up at the same time
    tmp = cached.with_name(f"{cached.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(cached)
    return data


def _fence(text: str) -> str:
    return "```text\n" + text.rstrip() + "\n```\n"


def cli_page(data: dict) -> str:
    parts = ["# Command line (`lhl --help`)\n",
             "Generated at build time from the installed package: `lhl --help` and `lhl <command> --help` "
             "for every command it lists. `python -m lhl` is the same entry point.\n",
             _fence(data["usage"])]
    for cmd, text in data["commands"].items():
        parts += [f"## `lhl {cmd}`\n", _fence(text)]
    return "\n".join(parts)


def presets_page(data: dict) -> str:
    return ("# Presets (`lhl list`)\n\nGenerated at build time from `lhl list`: the sequences (`seq=`), "
            "method presets (`method=`), methods, datasets and their options, task types, backbones and "
            "the distillation presets that this checkout holds. What each sequence is for: "
            "[Protocol and presets](../concepts/protocol.md).\n\n" + _fence(data["list"]))


def config_page() -> str:
    run = schema_table.markdown(ROOT / "src/lhl/config/schema.py", "Config")
    kd = schema_table.markdown(ROOT / "src/lhl/config/distill_schema.py", "DistillConfig")
    return ("# Configuration keys\n\nGenerated at build time from the typed schemas: every key with its type, "
            "default and the comment beside it in the source. An unknown key is an error with the closest "
            "valid one. How presets and overrides compose: [Configuration and sweeps]"
            "(../guides/configuration.md).\n\n"
            "## `lhl run` (`src/lhl/config/schema.py`)\n\n"
            "`method` holds `name` plus the options of that method's `Options` dataclass; they are listed "
            "with each method in [Baselines](../methods/baselines.md) and [HAD](../methods/had.md).\n"
            + run + "\n## `lhl distill` (`src/lhl/config/distill_schema.py`)\n" + kd)


def makefile_page() -> str:
    proc = subprocess.run(["make", "-s", "--no-print-directory", "help"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    if proc.returncode != 0:
        raise RuntimeError(f"make help failed:\n{proc.stderr}")
    return ("# Makefile (`make help`)\n\nGenerated at build time from `make help`. Every target is a thin "
            "wrapper over `lhl <command>`; a variable means the same for every target that takes it.\n\n"
            + _fence(proc.stdout))


def on_files(files, config):
    data = cli_outputs()
    pages = {"reference/cli.md": cli_page(data), "reference/presets.md": presets_page(data),
             "reference/config.md": config_page(), "reference/makefile.md": makefile_page()}
    for uri, content in pages.items():
        files.append(File.generated(config, uri, content=content))
    return files
