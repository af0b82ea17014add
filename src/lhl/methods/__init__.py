"""Lifelong methods. Importing this package registers every built-in method."""
import importlib
import pkgutil

from lhl.core.registry import METHODS

for _m in pkgutil.iter_modules(__path__):
    if _m.name not in ("base", "shared") and not _m.name.startswith("_"):  # a module or a package (had)
        importlib.import_module(f"{__name__}.{_m.name}")

__all__ = ["METHODS"]
