"""The lifelong-method interface: how a method plans its phases and what it adds to the loss.

A method is one file in this package plus a `METHODS.register` entry. It never touches the
training loop: the LightningModule calls `training_loss` with the student's outputs on every
seen head, the frozen teacher's outputs on every old head (None in the first phase) and the
batch, and logs every term the method returns.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

from torch import Tensor, nn

from lhl.tasks.base import TaskSpec


@dataclass
class Phase:
    """One phase: the tasks whose labels are used, which train slice, and whether to start anew."""

    index: int
    tasks: List[str]
    slice: Optional[int]  # index of the disjoint train slice; None = the whole train set
    fresh_model: bool = False  # single-task references start from a new network
    eval_tasks: Optional[List[str]] = None  # default: every task seen so far


@dataclass
class MethodOptions:
    """Options common to all methods (subclasses add their own fields)."""


class Method:
    """Base class: current-task supervised loss only (this is `finetune`)."""

    Options = MethodOptions
    uses_teacher: bool = False

    def __init__(self, options: MethodOptions, tasks: Dict[str, TaskSpec]):
        self.opts = options
        self.tasks = tasks

    # --- the plan -----------------------------------------------------------------------------
    def plan(self, order: List[str]) -> List[Phase]:
        """The default lifelong protocol: phase t trains task t on train slice t."""
        return [Phase(index=i, tasks=[t], slice=i) for i, t in enumerate(order)]

    # --- the loss -----------------------------------------------------------------------------
    def current_loss(
        self, student: Dict[str, Tensor], batch: Dict[str, Tensor], current: List[str]
    ) -> Tuple[Tensor, Dict[str, Tensor]]:
        """Supervised loss of the tasks whose labels this phase has."""
        logs: Dict[str, Tensor] = {}
        total = student[current[0]].new_zeros(())
        for name in current:
            term = self.tasks[name].loss(student[name], batch[name])
            logs[f"loss/{name}"] = term.detach()
            total = total + term
        return total, logs

    def training_loss(
        self,
        student: Dict[str, Tensor],
        teacher: Optional[Dict[str, Tensor]],
        batch: Dict[str, Tensor],
        current: List[str],
        old: List[str],
    ) -> Tuple[Tensor, Dict[str, Tensor]]:
        return self.current_loss(student, batch, current)

    # --- hooks for methods with state (regularisers, buffers) ---------------------------------
    def on_phase_start(self, phase: Phase, network: nn.Module) -> None:
        """Called before the phase's fit (the network already has the phase's heads)."""

    def on_phase_end(self, phase: Phase, network: nn.Module, train_loader) -> None:
        """Called after the phase's fit with that phase's train loader (e.g. Fisher estimation)."""

    def observe(self, batch: Dict[str, Tensor], phase: Phase) -> None:
        """Sees every training batch of the phase after its optimiser step (ER's reservoir
        sampling: as in Mammoth's ER, a batch enters the buffer after the step it trained)."""

    def extra_loss(
        self, network: nn.Module, batch: Dict[str, Tensor], phase: Phase
    ) -> Tuple[Optional[Tensor], Dict[str, Tensor]]:
        """A term added to the loss that needs the network itself: a parameter-space penalty
        (EWC, SI, MAS) or a replay loss (ER). None when the method adds nothing."""
        return None, {}

    def after_optimizer_step(self, network: nn.Module) -> None:
        """Called after each optimiser step (SI's path integral)."""

    def state_dict(self) -> Dict[str, Any]:
        return {}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        pass


def options_from_dict(cls, values: Dict[str, Any], where: str):
    """Build a method's Options dataclass, naming the unknown key and the valid ones."""
    valid = {f.name for f in dataclasses.fields(cls)}
    values = {(k + "_" if k + "_" in valid and k not in valid else k): v for k, v in values.items()}
    for key in values:
        if key not in valid:
            raise KeyError(
                f"{where}: unknown option 'method.{key}'; valid options: "
                f"{', '.join(sorted(v.rstrip('_') for v in valid | {'name'}))}"
            )
    return cls(**values)
