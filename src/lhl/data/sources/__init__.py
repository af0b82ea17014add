"""Dataset sources. Importing this package registers every built-in dataset.

Contract of a registered dataset class (docs/tutorials/add-a-dataset.md walks through one):
  cls(root: str | None, split: "train" | "val", tasks: list[str], **options) -> torch Dataset
  cls.task_info(**options) -> {task_name: (task_kind, channels)}
  a sample is a dict: "image" float32 [3, H, W] in [0, 1], "index" int, and one entry per
  requested task in the MTAN label format (semantic int64 [H, W] with -1 = ignore,
  depth float32 [1, H, W] with 0 = invalid, normal float32 [3, H, W] with all-zero = invalid).
  the options (`data.options`) are the constructor's named keyword parameters, checked by name;
  class attributes `NORMAL_X_CHANNEL` (stored normal channel that holds x, flipped by the
  augmentation) and `DEPTH_IS_INVERSE` (depth grows as things come closer); an `index_tasks`
  option, if taken, receives the sequence's tasks so every phase lists the same samples.
A missing root raises FileNotFoundError naming the dataset, the path, the config key, the fix,
what exists nearby (`lhl.data.checks.found_near`) and how to get the data.
"""
import importlib
import pkgutil

from lhl.core.registry import DATASETS

for _m in pkgutil.iter_modules(__path__):
    if not _m.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_m.name}")

__all__ = ["DATASETS"]
