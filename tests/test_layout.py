"""The package reads in data-flow order: no import runs upward, and no file does several jobs."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "lhl"
#: the layers, bottom first; a module may import its own layer and those below it
LAYERS = ["core", "config", "tasks", "models", "data", "runs", "losses", "methods", "reporting", "engine",
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


def import_graph() -> dict:
    """{module: the lhl modules it imports}, file by file, imports inside functions included: a
    `from package import name` counts as importing the module `package.name` where that is one,
    else the package."""
    known = dict(modules())

    def module_of(target: str) -> str:
        while target not in known and "." in target:
            target = target.rsplit(".", 1)[0]
        return target

    graph = {}
    for name, path in known.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lhl") and node.level == 0:
                targets |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in known else module_of(node.module)
                            for a in node.names}
            elif isinstance(node, ast.Import):
                targets |= {module_of(a.name) for a in node.names if a.name.startswith("lhl")}
        graph[name] = targets - {name, "lhl"}
    return graph


def cycles(graph: dict) -> list:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while not component or component[-1] != v:
                component.append(stack.pop())
                on_stack.discard(component[-1])
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_file_level_import_cycle():
    assert cycles(import_graph()) == [], "modules that import each other (directly or through others)"


def test_the_cycle_check_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(graph) == [["a", "b", "c"]] and cycles({"a": {"b"}, "b": set()}) == []


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
