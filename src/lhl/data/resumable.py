"""A train loader whose sampling position survives a mid-epoch checkpoint.

Lightning stores `state_dict()` of every train loader that has one in its checkpoints and calls
`load_state_dict` when it restores one (its `_Stateful` protocol), but it does not move the
loader forward itself. `ResumableLoader` stores (a) the shuffling generator's state at the start
of the current epoch and (b) how many batches of that epoch the training loop has processed; on
restore it redraws the same permutation and skips that many batches of *indices* (no sample is
loaded for them), so a resumed phase sees exactly the batches an uninterrupted one would.

The position comes from `position_fn` (the datamodule passes the training loop's processed-batch
count): counting yielded batches would be wrong, since Lightning and the loader workers prefetch.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Iterator, List, Optional

import torch
from torch.utils.data import BatchSampler, DataLoader, Sampler


class ResumableBatchSampler(Sampler[List[int]]):
    """`BatchSampler(sampler, batch_size, drop_last)` that can start an epoch after `skip` batches
    and rewind the shuffling `generator` to the state it had when the interrupted epoch began."""

    def __init__(self, sampler: Sampler, batch_size: int, drop_last: bool, generator: Optional[torch.Generator]):
        self.sampler = sampler
        self.inner = BatchSampler(sampler, batch_size, drop_last)
        self.generator = generator
        self.epoch_start_state: Optional[torch.Tensor] = None  # the generator before this epoch's draw
        self._restore: Optional[torch.Tensor] = None
        self._redraw_base_seed = False
        self._skip = 0

    def set_epoch(self, epoch: int) -> None:
        """Lightning calls this at every epoch start; the DistributedSampler's permutation follows it."""
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    def resume(self, generator_state: Optional[torch.Tensor], skip: int, redraw_base_seed: bool = False) -> None:
        """At the next `__iter__`: the generator set to `generator_state` (after the loader drew its
        base seed), after replaying that draw when `redraw_base_seed` (the state is from before it),
        then `skip` batches skipped."""
        self._restore, self._skip, self._redraw_base_seed = generator_state, int(skip), redraw_base_seed

    def __iter__(self) -> Iterator[List[int]]:
        if self.generator is not None:
            if self._restore is not None:
                self.generator.set_state(self._restore)
                if self._redraw_base_seed:  # DataLoader's own draw (_BaseDataLoaderIter), as uninterrupted
                    torch.empty((), dtype=torch.int64).random_(generator=self.generator)
            self.epoch_start_state = self.generator.get_state()
        self._restore, self._redraw_base_seed = None, False
        skip, self._skip = self._skip, 0
        for i, batch in enumerate(self.inner):
            if i >= skip:
                yield batch

    def __len__(self) -> int:
        return len(self.inner)


class ResumableLoader(DataLoader):
    """A DataLoader over a `ResumableBatchSampler` with Lightning's `state_dict` / `load_state_dict`."""

    def __init__(self, dataset, *, batch_size: int, shuffle: bool, drop_last: bool,
                 generator: Optional[torch.Generator], sampler: Optional[Sampler] = None,
                 position_fn: Optional[Callable[[], int]] = None, **kwargs: Any):
        if sampler is None:
            sampler = (torch.utils.data.RandomSampler(dataset, generator=generator) if shuffle
                       else torch.utils.data.SequentialSampler(dataset))
        # the same generator feeds the loader's base seed, as DataLoader(shuffle=True, generator=g) does
        super().__init__(dataset, batch_sampler=ResumableBatchSampler(sampler, batch_size, drop_last, generator),
                         generator=generator, **kwargs)
        self.position_fn = position_fn

    def state_dict(self) -> Dict[str, Any]:
        bs: ResumableBatchSampler = self.batch_sampler
        done = int(self.position_fn()) if self.position_fn is not None else 0
        if done >= len(bs):  # saved at the end of an epoch: the next one starts as it would have
            state = None if bs.generator is None else bs.generator.get_state()
            return {"generator_state": state, "batches_done": 0, "epoch_end": True}
        return {"generator_state": bs.epoch_start_state, "batches_done": done, "epoch_end": False}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        bs: ResumableBatchSampler = self.batch_sampler
        gen_state = state.get("generator_state")
        if state.get("epoch_end"):  # the state the next epoch's iterator starts from, uninterrupted
            # Lightning may create that iterator before or after this call (a checkpoint saved at an
            # epoch's last batch vs at an in-fit validation's end): set it now for the base seed,
            # and again when the permutation is drawn, after replaying the base-seed draw
            if gen_state is not None and bs.generator is not None:
                bs.generator.set_state(gen_state)
            bs.resume(gen_state, 0, redraw_base_seed=True)
        else:  # after the base seed: the permutation of the interrupted epoch, then skip its done batches
            bs.resume(gen_state, state.get("batches_done", 0))
