"""The train / val DataLoaders of `lhl distill`: the semantic labels of one registered dataset."""
from __future__ import annotations

from typing import Tuple

import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader


def build_loaders(cfg: DictConfig) -> Tuple[DataLoader, DataLoader, int]:
    """Train / val DataLoaders of the semantic labels, and the number of classes."""
    from lhl.data.sources import DATASETS

    cls = DATASETS.get(cfg.data.name)
    node = cfg.data.get(cfg.data.name)
    options = OmegaConf.to_container(node, resolve=True) if node is not None else {}
    info = cls.task_info(**options) if hasattr(cls, "task_info") else {}
    if "semantic" not in info:
        raise ValueError(f"data.name={cfg.data.name}: the dataset has no 'semantic' task")
    num_classes = int(info["semantic"][1])
    sets = {s: cls(root=cfg.data.root, split=s, tasks=["semantic"], **options) for s in ("train", "val")}
    gen = torch.Generator().manual_seed(int(cfg.run.seed))
    kw = dict(batch_size=int(cfg.data.batch_size), num_workers=int(cfg.data.num_workers))
    train = DataLoader(sets["train"], shuffle=True, drop_last=len(sets["train"]) > kw["batch_size"],
                       generator=gen, **kw)
    return train, DataLoader(sets["val"], shuffle=False, **kw), num_classes
