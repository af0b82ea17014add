"""Name -> factory registries: a new task type, method, dataset or distiller is one file plus one entry.

Each registry knows the package whose modules register into it and imports that package the first
time a name is looked up, so a lookup never depends on what happened to be imported before (and
low layers such as the config checks need no import of the layers above them).
"""
from __future__ import annotations

import importlib
from typing import Callable, Dict, Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """A named map from string keys to factories, with errors that list the valid names."""

    def __init__(self, kind: str, package: str):
        self.kind = kind
        self.package = package
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


TASKS: Registry = Registry("task type", "lhl.tasks")
METHODS: Registry = Registry("method", "lhl.methods")
DATASETS: Registry = Registry("dataset", "lhl.data.sources")
DISTILLERS: Registry = Registry("distiller", "lhl.distill")
