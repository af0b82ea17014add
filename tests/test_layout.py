"""The package reads in data-flow order: no import runs upward, and no file does several jobs."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "lhl"
#: the layers, bottom first; a module may import its own layer and those below it
LAYERS = ["core", "config", "tasks", "models", "data", "losses", "methods", "reporting", "engine",
          "distill", "tools", "cli", "__main__"]
MAX_LINES = 300


def layer_of(module: str) -> int:
    top = module.split(".")[1] if module.startswith("lhl.") else module
    return LAYERS.index(top)


def modules():
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC.parent).with_suffix("")
        name = ".".join(rel.parts)
        if name.endswith(".__init__"):
            name = name[: -len(".__init__")]
        if name == "lhl":
            continue
        yield name, path


def imported(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lhl") and node.level == 0:
            yield node.module, node.lineno
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("lhl"):
                    yield alias.name, node.lineno


@pytest.mark.parametrize("name,path", list(modules()), ids=lambda v: str(v) if isinstance(v, str) else "")
def test_no_import_runs_upward(name, path):
    own = layer_of(name)
    upward = [f"{path.name}:{line} imports {target}" for target, line in imported(path)
              if target != "lhl" and layer_of(target) > own]
    assert not upward, f"{name} is in layer '{LAYERS[own]}': " + "; ".join(upward)


def test_every_layer_is_a_folder_or_an_entry_point():
    tops = {p.name if p.is_dir() else p.stem for p in SRC.iterdir() if not p.name.startswith("__pycache__")}
    assert tops - {"__init__"} <= set(LAYERS), sorted(tops - set(LAYERS))


@pytest.mark.parametrize("path", sorted(SRC.rglob("*.py")), ids=lambda p: str(p.relative_to(SRC)))
def test_no_file_is_longer_than_about_300_lines(path):
    assert len(path.read_text().splitlines()) <= MAX_LINES, f"{path.relative_to(SRC)}: split it by job"
