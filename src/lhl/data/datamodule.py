"""One LightningDataModule for a whole sequence, set to one phase at a time.

Phase t: the train loader walks that phase's slice with only its tasks' labels; the val loader
walks the full val set with the labels of every task evaluated after the phase. Under DDP the
train set is sharded by a DistributedSampler (seeded per phase) and the val set is sharded
exactly, without the padding that would double-count samples.
"""
from __future__ import annotations

from typing import Dict, List, Optional

import lightning.pytorch as pl
import torch
from omegaconf import DictConfig
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset

from lhl.config.resolve import checked_options, dataset_options, per_process_batch
from lhl.core.distributed import rank_and_world
from lhl.core.errors import UsageError
from lhl.data.protocol import Phase, phase_seed, phase_slices
from lhl.data.resumable import ResumableLoader
from lhl.data.validate import preflight
from lhl.data.tuning import generates_tuning_views, held_out, stream_of, stream_options
from lhl.tasks.base import TaskSpec


def build_dataset(data_cfg: DictConfig, split: str, tasks: List[str],
                  index_tasks: Optional[List[str]] = None, phases: Optional[int] = None) -> Dataset:
    """The dataset of `split` loading `tasks`; `index_tasks` (the sequence's tasks) fixes its sample
    list for datasets that take that option, so every phase slices the same samples. On the tuning
    stream (`lhl.data.tuning`) of a dataset without a generator, `split` names the held-out train
    images ("val") or the rest ("train"), cut by the sequence's phases (`phases`, default the
    number of `index_tasks`)."""
    cls, options = checked_options(data_cfg)
    options = stream_options(cls, options, data_cfg)
    if index_tasks is not None and "index_tasks" in dataset_options(cls):
        options["index_tasks"] = list(index_tasks)
    if stream_of(data_cfg) == "tune" and not generates_tuning_views(cls):
        # the tuning stream of a dataset without a generator: the reported split is never opened
        full = cls(root=data_cfg.root, split="train", tasks=list(tasks), **options)
        phases = phases or (len(index_tasks) if index_tasks else None)
        if not phases:
            raise ValueError("build_dataset: the tuning stream's held-out set needs the sequence's phases")
        kept, held = held_out(len(full), phases, data_cfg.val_fraction, data_cfg.shuffle_split, data_cfg.split_seed)
        subset = Subset(full, held if split == "val" else kept)
        if hasattr(full, "CLASSES"):
            subset.CLASSES = full.CLASSES  # per-class tables name their rows
        return subset
    return cls(root=data_cfg.root, split=split, tasks=list(tasks), **options)


class LifelongDataModule(pl.LightningDataModule):
    """Data of a sequence; `set_phase` chooses the train slice and the evaluated tasks."""

    def __init__(
        self, data_cfg: DictConfig, specs: Dict[str, TaskSpec], seed: int = 0,
        channels_last: bool = False,
    ):
        """`specs`: the sequence's task types in order (their labels, and how augmentation moves them)."""
        super().__init__()
        self.cfg = data_cfg
        self.specs = dict(specs)
        self.order = list(specs)
        self.seed = seed
        self.channels_last = bool(channels_last)
        self.phase: Optional[Phase] = None
        self.augment = None  # the phase's DenseAugment, applied on the device to training batches
        self._train_full: Dict[tuple, Dataset] = {}
        self._slices = None
        self._sliced_len = 0

    def prepare_data(self) -> None:
        """Generates a dataset that is made on demand (synthetic rooms) once, before ranks read it;
        then checks both splits before training (`lhl.data.validate.preflight`: a bad file stops
        here, naming the file, the field and the fix)."""
        self._make_on_demand()
        preflight(lambda split, tasks: build_dataset(self.cfg, split, tasks, list(self.specs)),
                  list(self.specs), len(self.specs))

    def _make_on_demand(self) -> None:
        cls, options = checked_options(self.cfg)
        if hasattr(cls, "prepare"):
            cls.prepare(root=self.cfg.root, **stream_options(cls, options, self.cfg))

    def set_phase(self, phase: Phase) -> None:
        """Train on `phase`'s slice and tasks, evaluate its `eval_tasks`."""
        self.phase = phase
        self.augment = None
        if self.cfg.augment:
            from lhl.data.augment import DenseAugment

            self.augment = DenseAugment.for_dataset(self.cfg, {t: self.specs[t] for t in phase.train_tasks})

    def _train_set(self) -> Dataset:
        key = tuple(self.phase.train_tasks)
        if key not in self._train_full:
            self._train_full[key] = build_dataset(self.cfg, "train", list(self.phase.train_tasks), index_tasks=self.order)
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
                f"{list(self.phase.train_tasks)} but {self._sliced_len} when the phase slices were cut; a dataset "
                "must list the same samples whatever labels it loads (see its index_tasks option)"
            )
        return Subset(full, self._slices[self.phase.slice].tolist())

    def train_dataloader(self) -> DataLoader:
        """The phase slice's loader; its sampling position is saved in mid-phase checkpoints
        (`lhl.data.resumable`), so a resumed phase continues with the batch it would have seen."""
        ds = self._train_set()
        rank, world = rank_and_world()
        batch = per_process_batch(self.cfg, world)
        seed = phase_seed(self.seed, 1000 + self.phase.index)
        if len(ds) < batch * world and self.cfg.drop_last:
            raise UsageError(
                f"data.batch_size={batch} per process: phase {self.phase.index} has only "
                f"{len(ds)} train samples for {world} process(es), so drop_last leaves no batch; "
                "lower data.batch_size (or data.global_batch_size) or set data.drop_last=false"
            )
        sampler = None
        if world > 1:
            sampler = DistributedSampler(
                ds, num_replicas=world, rank=rank, shuffle=self.cfg.shuffle, seed=seed,
                drop_last=self.cfg.drop_last,
            )
        return ResumableLoader(
            ds, batch_size=batch, shuffle=bool(self.cfg.shuffle), sampler=sampler,
            generator=torch.Generator().manual_seed(seed), drop_last=self.cfg.drop_last,
            position_fn=self._batches_done, **self._loader_kwargs(),
        )

    def _batches_done(self) -> int:
        """Batches of the current epoch the training loop has processed (what a resume skips)."""
        trainer = self.trainer
        return 0 if trainer is None else int(trainer.fit_loop.epoch_loop.batch_progress.current.processed)

    def val_dataloader(self) -> DataLoader:
        ds = build_dataset(self.cfg, "val", list(self.phase.eval_tasks), index_tasks=self.order)
        rank, world = rank_and_world()
        sampler = (
            UnrepeatedDistributedSampler(ds, num_replicas=world, rank=rank, shuffle=False)
            if world > 1 else None
        )
        # its own generator: an iterator draws its base seed from it, not from the training RNG, so
        # validating (also mid-fit, eval.every_n_epochs, or on a resume) leaves training's streams alone
        return DataLoader(
            ds, batch_size=self.cfg.eval_batch_size or per_process_batch(self.cfg, world), shuffle=False,
            sampler=sampler, drop_last=False, generator=torch.Generator().manual_seed(0), **self._loader_kwargs(),
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
