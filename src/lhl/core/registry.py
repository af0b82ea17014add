"""Name -> factory registries: a new task type, method, dataset or distiller is one file plus one entry.

Each registry knows the package whose modules register into it and imports that package the first
time a name is looked up, so a lookup never depends on what happened to be imported before (and
low layers such as the config checks need no import of the layers above them).
"""
from __future__ import annotations

import ast
import importlib
import importlib.util
from pathlib import Path
from typing import Callable, Dict, Generic, List, Optional, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """A named map from string keys to factories, with errors that list the valid names."""

    def __init__(self, kind: str, package: str, symbol: str = ""):
        self.kind = kind
        self.package = package
        self.symbol = symbol  # the registry's name where it is used as a decorator (`@METHODS.register`)
        self._items: Dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            if name in self._items:
                raise KeyError(f"{self.kind} '{name}' is registered twice")
            self._items[name] = obj
            return obj

        return deco

    def _load(self) -> None:
        importlib.import_module(self.package)  # its modules register themselves on import

    def get(self, name: str) -> T:
        self._load()
        if name not in self._items:
            raise KeyError(
                f"unknown {self.kind} '{name}'; choose one of: {', '.join(sorted(self._items))}"
            )
        return self._items[name]

    def __contains__(self, name: str) -> bool:
        self._load()
        return name in self._items

    def __iter__(self):
        self._load()
        return iter(sorted(self._items))

    # --- read from the source, without importing it (`lhl list` answers without torch) ------------
    def declared(self) -> Dict[str, ast.ClassDef]:
        """{name: class} of every `@<symbol>.register("name")` class in the package's files, parsed,
        not imported; tests/test_registry_declared.py checks it against the imported registry."""
        spec = importlib.util.find_spec(self.package)
        found: Dict[str, ast.ClassDef] = {}
        for folder in spec.submodule_search_locations or []:
            for path in sorted(Path(folder).rglob("*.py")):
                for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                    name = self._registered_as(node) if isinstance(node, ast.ClassDef) else None
                    if name is not None:
                        found[name] = node
        return dict(sorted(found.items()))

    def _registered_as(self, node: ast.ClassDef) -> Optional[str]:
        for deco in node.decorator_list:
            if (isinstance(deco, ast.Call) and isinstance(deco.func, ast.Attribute) and deco.func.attr == "register"
                    and isinstance(deco.func.value, ast.Name) and deco.func.value.id == self.symbol
                    and deco.args and isinstance(deco.args[0], ast.Constant)):
                return str(deco.args[0].value)
        return None

    def declared_parameters(self, name: str) -> List[str]:
        """The keyword parameters of the declared class `name`'s own `__init__` (empty when it
        defines none), read from the source."""
        for item in self.declared()[name].body:
            if isinstance(item, ast.FunctionDef) and item.name == "__init__":
                args = item.args
                return [a.arg for a in args.args + args.kwonlyargs if a.arg != "self"]
        return []


TASKS: Registry = Registry("task type", "lhl.tasks", "TASKS")
METHODS: Registry = Registry("method", "lhl.methods", "METHODS")
DATASETS: Registry = Registry("dataset", "lhl.data.sources", "DATASETS")
DISTILLERS: Registry = Registry("distiller", "lhl.distill", "DISTILLERS")
