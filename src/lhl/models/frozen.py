"""Frozen networks held beside a LightningModule: the teacher of a lifelong phase or of a distillation.

A frozen copy is in eval mode without gradients. `hold_outside` stores it on a module without
registering it, so it is not in `state_dict`, the optimiser or DDP, and Lightning's `train()` /
`.to()` never reach it: the owner moves it and saves it explicitly.
"""
from __future__ import annotations

import copy
from typing import List

from torch import nn


def freeze_copy(network: nn.Module, keep: List[str]) -> nn.Module:
    """A deep copy in eval mode without gradients, holding only the heads in `keep`."""
    teacher = copy.deepcopy(network)
    for name in list(teacher.heads.keys()):
        if name not in keep:
            del teacher.heads[name]
            teacher.specs.pop(name, None)
    teacher.eval()
    teacher.requires_grad_(False)
    return teacher


def hold_outside(owner: nn.Module, name: str, value) -> None:
    """Set `owner.<name> = value` without registering `value` as a submodule."""
    object.__setattr__(owner, name, value)
