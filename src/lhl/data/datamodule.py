"""One LightningDataModule for a whole sequence, set to one phase at a time.

Phase t: the train loader walks that phase's slice with only its tasks' labels; the val loader
walks the full val set with the labels of every task evaluated after the phase. Under DDP the
train set is sharded by a DistributedSampler (seeded per phase) and the val set is sharded
exactly, without the padding that would double-count samples.
"""
from __future__ import annotations

import difflib
import inspect
from typing import Dict, List, Optional, Tuple

import lightning.pytorch as pl
import numpy as np
import torch
import torch.distributed as dist
from omegaconf import DictConfig, OmegaConf
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset

from lhl.data.sequence import phase_slices
from lhl.data.sources import DATASETS
from lhl.methods.base import Phase


def phase_seed(seed: int, phase: int) -> int:
    """A seed for (run seed, phase) whose streams do not overlap other runs' (unlike seed + phase)."""
    return int(np.random.SeedSequence([int(seed), int(phase) + 1]).generate_state(1)[0])


def _dist() -> tuple:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


#: constructor arguments every dataset takes that are not options
_SAMPLE_ARGS = ("self", "root", "split", "tasks")


def dataset_options(cls) -> List[str]:
    """The options a dataset takes: its constructor's named keyword parameters besides root, split, tasks."""
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return [n for n, p in inspect.signature(cls.__init__).parameters.items()
            if p.kind in kinds and n not in _SAMPLE_ARGS]


def checked_options(data_cfg: DictConfig) -> Tuple[type, dict]:
    """The dataset class and `data.options` as a plain dict, every key checked against its constructor."""
    cls = DATASETS.get(data_cfg.dataset)
    raw = data_cfg.get("options") if isinstance(data_cfg, DictConfig) else getattr(data_cfg, "options", None)
    options = OmegaConf.to_container(raw, resolve=True) if isinstance(raw, DictConfig) else dict(raw or {})
    valid = dataset_options(cls)
    bad = [k for k in options if k not in valid]
    if bad:
        near = difflib.get_close_matches(str(bad[0]), valid, n=1)
        raise ValueError(
            f"data.options.{bad[0]}: dataset '{data_cfg.dataset}' has no option '{bad[0]}'"
            + (f" (did you mean '{near[0]}'?)" if near else "")
            + (f"; also unknown: {bad[1:]}" if bad[1:] else "")
            + f"; valid options: {', '.join(valid) or 'none'}"
        )
    return cls, options


def build_dataset(data_cfg: DictConfig, split: str, tasks: List[str],
                  index_tasks: Optional[List[str]] = None) -> Dataset:
    """The dataset of `split` loading `tasks`; `index_tasks` (the sequence's tasks) fixes its sample
    list for datasets that take that option, so every phase slices the same samples."""
    cls, options = checked_options(data_cfg)
    if index_tasks is not None and "index_tasks" in dataset_options(cls):
        options["index_tasks"] = list(index_tasks)
    return cls(root=data_cfg.root, split=split, tasks=list(tasks), **options)


def task_info(data_cfg: DictConfig) -> Dict[str, tuple]:
    cls, options = checked_options(data_cfg)
    return dict(cls.task_info(**options))


class LifelongDataModule(pl.LightningDataModule):
    """Data of a sequence; `set_phase` chooses the train slice and the evaluated tasks."""

    def __init__(self, data_cfg: DictConfig, tasks: List[str], seed: int = 0):
        super().__init__()
        self.cfg = data_cfg
        self.order = list(tasks)
        self.seed = seed
        self.phase: Optional[Phase] = None
        self.eval_tasks: List[str] = []
        self._train_full: Dict[tuple, Dataset] = {}
        self.augment = None  # a callable applied on the device to training batches (DenseAugment)
        self.channels_last = False
        self._slices = None
        self._sliced_len = 0

    def prepare_data(self) -> None:
        """Generates a dataset that is made on demand (synthetic rooms) once, before ranks read it."""
        cls, options = checked_options(self.cfg)
        if hasattr(cls, "prepare"):
            cls.prepare(root=self.cfg.root, **options)

    def set_phase(self, phase: Phase, eval_tasks: List[str]) -> None:
        self.phase = phase
        self.eval_tasks = list(eval_tasks)

    def _train_set(self) -> Dataset:
        key = tuple(self.phase.tasks)
        if key not in self._train_full:
            self._train_full[key] = build_dataset(self.cfg, "train", self.phase.tasks, index_tasks=self.order)
        full = self._train_full[key]
        if self.phase.slice is None:
            return full
        if self._slices is None:
            self._slices = phase_slices(
                len(full), len(self.order), self.cfg.shuffle_split, self.cfg.split_seed
            )
            self._sliced_len = len(full)
        elif len(full) != self._sliced_len:  # slices index one sample list: it must not change per phase
            raise RuntimeError(
                f"data.dataset={self.cfg.dataset}: the train set lists {len(full)} samples for tasks "
                f"{list(self.phase.tasks)} but {self._sliced_len} when the phase slices were cut; a dataset "
                "must list the same samples whatever labels it loads (see its index_tasks option)"
            )
        return Subset(full, self._slices[self.phase.slice].tolist())

    def train_dataloader(self) -> DataLoader:
        ds = self._train_set()
        rank, world = _dist()
        seed = phase_seed(self.seed, 1000 + self.phase.index)
        if len(ds) < self.cfg.batch_size * world and self.cfg.drop_last:
            raise ValueError(
                f"data.batch_size={self.cfg.batch_size}: phase {self.phase.index} has only "
                f"{len(ds)} train samples for {world} process(es), so drop_last leaves no batch; "
                "lower data.batch_size or set data.drop_last=false"
            )
        if world > 1:
            sampler = DistributedSampler(
                ds, num_replicas=world, rank=rank, shuffle=self.cfg.shuffle, seed=seed,
                drop_last=self.cfg.drop_last,
            )
            shuffle, generator = None, None
        else:
            sampler, shuffle = None, bool(self.cfg.shuffle)
            generator = torch.Generator().manual_seed(seed)
        return DataLoader(
            ds, batch_size=self.cfg.batch_size, shuffle=shuffle, sampler=sampler,
            generator=generator, drop_last=self.cfg.drop_last, **self._loader_kwargs(),
        )

    def val_dataloader(self) -> DataLoader:
        ds = build_dataset(self.cfg, "val", self.eval_tasks, index_tasks=self.order)
        rank, world = _dist()
        sampler = (
            UnrepeatedDistributedSampler(ds, num_replicas=world, rank=rank, shuffle=False)
            if world > 1 else None
        )
        return DataLoader(
            ds, batch_size=self.cfg.eval_batch_size or self.cfg.batch_size, shuffle=False,
            sampler=sampler, drop_last=False, **self._loader_kwargs(),
        )

    def on_after_batch_transfer(self, batch, dataloader_idx: int = 0):
        """GPU-side augmentation of training batches; channels_last images when asked."""
        if self.augment is not None and self.trainer is not None and self.trainer.training:
            batch = self.augment(batch)
        if self.channels_last:
            batch["image"] = batch["image"].contiguous(memory_format=torch.channels_last)
        return batch

    def _loader_kwargs(self) -> dict:
        workers = int(self.cfg.num_workers)
        return dict(
            num_workers=workers,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=workers > 0,
        )
