"""The process group as the methods see it: rank and world size, 0 and 1 outside DDP."""
from __future__ import annotations

from typing import Tuple

import torch.distributed as dist


def rank_and_world() -> Tuple[int, int]:
    """(rank, world size) of the initialised default process group, else (0, 1)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1
