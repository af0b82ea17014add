"""Lifelong methods. Importing this package registers every built-in method."""
import importlib
import pkgutil

from lhl.core.registry import METHODS

for _m in pkgutil.iter_modules(__path__):
    if not _m.ispkg and _m.name != "base" and not _m.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_m.name}")

__all__ = ["METHODS"]
