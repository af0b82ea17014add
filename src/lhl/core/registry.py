"""Name -> factory registries: a new task type, method, dataset or backbone is one file plus one entry."""
from __future__ import annotations

from typing import Callable, Dict, Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """A named map from string keys to factories, with errors that list the valid names."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: Dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            if name in self._items:
                raise KeyError(f"{self.kind} '{name}' is registered twice")
            self._items[name] = obj
            return obj

        return deco

    def get(self, name: str) -> T:
        if name not in self._items:
            raise KeyError(
                f"unknown {self.kind} '{name}'; choose one of: {', '.join(sorted(self._items))}"
            )
        return self._items[name]

    def names(self):
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        return name in self._items


TASKS: Registry = Registry("task type")
METHODS: Registry = Registry("method")
DATASETS: Registry = Registry("dataset")
