"""How many epochs a phase trains: `train.epochs`, or `train.task_epochs[task]` for a phase that
trains that task (a phase that trains several tasks, as joint's: the most of theirs), times
`train.epoch_scale`. One place for the trainer, the checks and the convergence tooling."""
from __future__ import annotations

from typing import Mapping, Sequence

from omegaconf import DictConfig

from lhl.config.compose import ConfigError


def phase_epochs(train: Mapping, tasks: Sequence[str]) -> int:
    """The epochs of a phase that trains `tasks`, from a train section (a DictConfig, or the plain
    dict of a run folder's config.yaml)."""
    own = train.get("task_epochs") or {}
    epochs = max([int(own[t]) for t in tasks if t in own] or [int(train.get("epochs"))])
    return epochs * int(train.get("epoch_scale") or 1)


def check_epochs(cfg: DictConfig, offered: Sequence[str]) -> None:
    """train.task_epochs names tasks the dataset offers (`offered`; a preset's entry for a task the
    sequence was cut down to leave out does nothing), every count and train.epoch_scale is >= 1."""
    for task, n in (cfg.train.get("task_epochs") or {}).items():
        if task not in offered:
            raise ConfigError(f"train.task_epochs.{task}: '{task}' is no task of dataset '{cfg.data.dataset}' "
                              f"({offered}); fix: key task_epochs by a task of the sequence "
                              f"({list(cfg.sequence.tasks)})")
        if int(n) < 1:  # the schema has made it an int
            raise ConfigError(f"train.task_epochs.{task}={n!r}: give a whole number of epochs >= 1")
    for key in ("epochs", "epoch_scale"):
        if int(cfg.train.get(key, 1)) < 1:
            raise ConfigError(f"train.{key}={cfg.train.get(key)}: give a whole number >= 1")
