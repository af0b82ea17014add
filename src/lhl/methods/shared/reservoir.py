"""A reservoir of training samples (Vitter's algorithm R) over a whole lifelong stream, DDP-exact.

Every sample offered enters with the same probability; images, per-task labels, dataset
indices and any extra per-slot tensors a method keeps beside them (DER's stored outputs, `extras`)
are stored densely on the CPU. Under DDP the reservoir runs over the global batch (the
ranks' batches in rank order): every rank draws the same slots from the same generator and
receives the kept rows from the ranks that hold them, so every rank holds the same buffer and rank
0's checkpoint resumes them all.
"""
from __future__ import annotations

from typing import Any, Dict, Optional

import torch
import torch.distributed as dist
from torch import Tensor

from lhl.core.distributed import rank_and_world


class ReservoirBuffer:
    """A fixed-size reservoir of (image, {task: label}, dataset index) on CPU.

    Storage is dense: `images` [N, ...], per task `labels[t]` [N, ...] and a mask `has[t]` [N]
    of the slots that hold a label for t. All randomness comes from one seeded generator whose
    state is saved, so a resumed single-device run draws exactly the stream the uninterrupted one
    would.
    """

    def __init__(self, size: int, seed: int = 0):
        if size < 1:
            raise ValueError(f"method.buffer_size={size}: the reservoir needs at least one slot")
        self.size = int(size)
        self.generator = torch.Generator().manual_seed(int(seed))
        self.seen = 0
        self.images: Optional[Tensor] = None
        self.indices = torch.full((self.size,), -1, dtype=torch.long)
        self.labels: Dict[str, Tensor] = {}
        self.has: Dict[str, Tensor] = {}
        #: extra per-slot tensors by name (stored in the dtype they are offered in) and their masks
        self.extras: Dict[str, Tensor] = {}
        self.has_extra: Dict[str, Tensor] = {}

    def __len__(self) -> int:
        return min(self.seen, self.size)

    def slots_for(self, count: int) -> Tensor:
        """Reservoir slot of each of `count` incoming samples (-1 = discarded), in stream order.

        The n-th sample (0-based) fills slot n while the buffer is not full; afterwards it draws
        r uniform in [0, n] and replaces slot r when r < size.
        """
        n = torch.arange(self.seen, self.seen + count, dtype=torch.float64)
        u = torch.rand(count, generator=self.generator, dtype=torch.float64)
        r = torch.floor(u * (n + 1)).long()
        n = n.long()
        slots = torch.where(n < self.size, n, torch.where(r < self.size, r, torch.full_like(r, -1)))
        self.seen += count
        return slots

    def _allocate(self, images: Tensor, labels: Dict[str, Tensor], extras: Dict[str, Tensor]) -> None:
        """CPU storage for the batch's image shape, label tasks and extras (shapes only: no copy)."""
        if self.images is None:
            self.images = torch.zeros((self.size,) + tuple(images.shape[1:]), dtype=images.dtype)
        elif self.images.shape[1:] != images.shape[1:]:
            raise ValueError(
                f"er: images of shape {tuple(images.shape[1:])} cannot join a buffer of "
                f"{tuple(self.images.shape[1:])}; replay needs one image size per run"
            )
        for t, y in labels.items():
            if t not in self.labels:
                self.labels[t] = torch.zeros((self.size,) + tuple(y.shape[1:]), dtype=y.dtype)
                self.has[t] = torch.zeros(self.size, dtype=torch.bool)
        for k, x in extras.items():
            if k not in self.extras:
                self.extras[k] = torch.zeros((self.size,) + tuple(x.shape[1:]), dtype=x.dtype)
                self.has_extra[k] = torch.zeros(self.size, dtype=torch.bool)

    @torch.no_grad()
    def add(
        self, images: Tensor, labels: Dict[str, Tensor], indices: Optional[Tensor] = None,
        extras: Optional[Dict[str, Tensor]] = None,
    ) -> None:
        """Offer a batch to the reservoir; within a batch a later sample wins a contested slot.

        `extras` are per-sample tensors stored beside the labels under their names (a slot keeps
        only the extras of the sample that filled it: `has_extra[name]` says which slots have one).

        Slots are drawn first (on the CPU generator, no device sync), then only the kept rows are
        copied to the CPU: once the buffer is full almost every batch keeps nothing. Under DDP the
        batch offered is the global one (every rank's batch of the same size, as a
        DistributedSampler gives them, in rank order) and the kept rows are all-gathered, so every
        rank stores the same rows; a step that keeps nothing anywhere needs no communication."""
        rank, world = rank_and_world()
        local = images.shape[0]
        extras = extras or {}
        self._allocate(images, labels, extras)
        slots = self.slots_for(local * world)
        kept = slots >= 0
        if not bool(kept.any()):
            return
        order = torch.arange(local * world)
        last = torch.full((self.size,), -1, dtype=torch.long)
        last.scatter_reduce_(0, slots[kept], order[kept], reduce="amax")
        target = torch.nonzero(last >= 0).squeeze(1)
        fetch = self._fetcher(last[target], local, rank, world)
        self.images[target] = fetch(images)
        self.indices[target] = -1 if indices is None else fetch(indices).long()
        for t in self.has:
            self.has[t][target] = t in labels
        for t, y in labels.items():
            self.labels[t][target] = fetch(y)
        for k in self.has_extra:
            self.has_extra[k][target] = k in extras
        for k, x in extras.items():  # gathered in fp32 (gloo has no all_gather for every dtype)
            self.extras[k][target] = fetch(x.float() if x.is_floating_point() else x).to(self.extras[k].dtype)

    @staticmethod
    def _fetcher(source: Tensor, local: int, rank: int, world: int):
        """A function taking a local batch tensor to its rows `source` (global row numbers) on CPU:
        on one process an index; under DDP each rank contributes the rows it owns (padded to the
        largest share) to one all_gather, and the gathered rows are put in `source` order."""
        if world == 1:
            return lambda x: x[source.to(x.device)].detach().cpu()
        owner = source // local
        width = int(torch.bincount(owner, minlength=world).max())
        position = torch.nn.functional.one_hot(owner, world).cumsum(0)[torch.arange(len(owner)), owner] - 1
        mine = torch.zeros(width, dtype=torch.long)
        own = source[owner == rank] - rank * local
        mine[: len(own)] = own

        def fetch(x: Tensor) -> Tensor:
            rows = x[mine.to(x.device)].detach().contiguous()
            parts = [torch.empty_like(rows) for _ in range(world)]
            dist.all_gather(parts, rows)
            return torch.stack(parts)[owner.to(x.device), position.to(x.device)].cpu()

        return fetch

    def sample(self, count: int) -> Tensor:
        """`count` distinct filled slots drawn uniformly (fewer when the buffer holds fewer).

        Under DDP every rank draws the same permutation and takes its own `count` of it (rank r the
        r-th block, wrapping round when the buffer holds fewer than world x count), so the ranks
        replay different samples and their generators stay in step."""
        rank, world = rank_and_world()
        n = len(self)
        take = min(count, n)
        perm = torch.randperm(n, generator=self.generator)
        return perm[(rank * take + torch.arange(take)) % n]  # one process: perm[:take]

    def state_dict(self) -> Dict[str, Any]:
        return {
            "size": self.size, "seen": self.seen, "generator": self.generator.get_state(),
            "images": None if self.images is None else self.images.clone(),
            "indices": self.indices.clone(),
            "labels": {t: y.clone() for t, y in self.labels.items()},
            "has": {t: m.clone() for t, m in self.has.items()},
            "extras": {k: x.clone() for k, x in self.extras.items()},
            "has_extra": {k: m.clone() for k, m in self.has_extra.items()},
        }

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        if state["size"] != self.size:
            raise ValueError(
                f"er: checkpoint buffer has {state['size']} slots but method.buffer_size="
                f"{self.size}; resume with the run's original buffer_size"
            )
        self.seen = int(state["seen"])
        self.generator.set_state(state["generator"])
        self.images = None if state["images"] is None else state["images"].cpu().clone()
        self.indices = state["indices"].cpu().clone()
        self.labels = {t: y.cpu().clone() for t, y in state["labels"].items()}
        self.has = {t: m.cpu().clone() for t, m in state["has"].items()}
        self.extras = {k: x.cpu().clone() for k, x in state.get("extras", {}).items()}
        self.has_extra = {k: m.cpu().clone() for k, m in state.get("has_extra", {}).items()}
