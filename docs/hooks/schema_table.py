"""Every key of a typed config schema as markdown, read from the source (no import, so no torch).

A schema is a module of dataclasses; a field whose default is `field(default_factory=Other)` with
`Other` a dataclass of the same module is a section. A key's meaning is its trailing comment and
the comment lines right above it.
"""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, Tuple

Row = Tuple[str, str, str, str]  # key, type, default, meaning


def _classes(tree: ast.Module) -> Dict[str, ast.ClassDef]:
    return {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}


def _comment(lines: List[str], lineno: int, end_lineno: int) -> str:
    """The comment lines right above line `lineno` (1-based) and the trailing comment of the field."""
    above: List[str] = []
    i = lineno - 2
    while i >= 0 and lines[i].strip().startswith("#"):
        above.insert(0, lines[i].strip().lstrip("#").strip())
        i -= 1
    last = lines[end_lineno - 1]
    trailing = last.split("  # ", 1)[1].strip() if "  # " in last else ""
    return " ".join(p for p in above + [trailing] if p)


def _section_of(value: ast.expr, classes: Dict[str, ast.ClassDef]) -> str | None:
    """The dataclass a `field(default_factory=Name)` default builds, if it is one of this module's."""
    if isinstance(value, ast.Call) and getattr(value.func, "id", None) == "field":
        for kw in value.keywords:
            if kw.arg == "default_factory" and isinstance(kw.value, ast.Name) and kw.value.id in classes:
                return kw.value.id
    return None


def _default(source: str, value: ast.expr | None) -> str:
    if value is None:
        return "(required)"
    if isinstance(value, ast.Call) and getattr(value.func, "id", None) == "field":
        for kw in value.keywords:
            if kw.arg == "default":
                return ast.get_source_segment(source, kw.value) or ""
            if kw.arg == "default_factory":
                inner = kw.value
                if isinstance(inner, ast.Lambda):
                    return ast.get_source_segment(source, inner.body) or ""
                return {"dict": "{}", "list": "[]"}.get(getattr(inner, "id", ""), ast.get_source_segment(source, inner) or "")
    return ast.get_source_segment(source, value) or ""


def rows(path: Path, root: str) -> List[Row]:
    """(key, type, default, meaning) of every key under the dataclass `root`, depth first."""
    source = path.read_text()
    tree = ast.parse(source)
    classes, lines = _classes(tree), source.splitlines()
    out: List[Row] = []

    def walk(name: str, prefix: str) -> None:
        for node in classes[name].body:
            if not isinstance(node, ast.AnnAssign) or not isinstance(node.target, ast.Name):
                continue
            key = prefix + node.target.id
            section = _section_of(node.value, classes)
            if section:
                walk(section, key + ".")
                continue
            out.append((key, ast.get_source_segment(source, node.annotation) or "",
                        _default(source, node.value), _comment(lines, node.lineno, node.end_lineno)))

    walk(root, "")
    return out


def _cell(text: str) -> str:
    """Text for a markdown table cell: pipes escaped, and `<` / `>` too, which the comments use for
    placeholders (`<seq>`) and which would otherwise be read as HTML tags."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|").replace("\n", " ")


def _code(text: str) -> str:
    """Text for a code span in a table cell (code spans show `<` as is; only pipes need escaping)."""
    return text.replace("|", "\\|").replace("\n", " ")


def markdown(path: Path, root: str) -> str:
    """One table per top-level section."""
    parts, section = [], None
    for key, typ, default, meaning in rows(path, root):
        top = key.split(".", 1)[0]
        if top != section:
            section = top
            parts.append(f"\n### `{top}`\n\n| key | type | default | meaning |\n|---|---|---|---|")
        parts.append(f"| `{_code(key)}` | `{_code(typ)}` | `{_code(default)}` | {_cell(meaning)} |")
    return "\n".join(parts) + "\n"
