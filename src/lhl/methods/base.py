"""The lifelong-method interface: what a method asks of each phase and what it adds to the loss.

A method is one file in this package plus a `METHODS.register` entry. It never touches the
training loop. Per step the LightningModule hands it a `Step` (the network, the student's outputs
on the heads the method asked for, the frozen teacher's outputs on the old heads, the batch and
the phase) and receives **named, weighted loss terms**: the loss is their sum, and each term is
logged as `loss/<name>` exactly as it entered the loss. Diagnostics (not in the loss) go in a
second dict. Hooks around the optimiser step let a method see the gradient before the step
(`before_optimizer_step`) and the update after it (`after_optimizer_step`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from lhl.data.protocol import Phase, PhaseRequest, sequential
from lhl.tasks.base import TaskSpec

#: named loss terms (their sum is the loss) and diagnostics (logged only)
Terms = Dict[str, Tensor]


@dataclass
class Step:
    """What a method sees of one training step."""

    network: nn.Module
    student: Dict[str, Tensor]  # activated outputs of `Method.student_heads(phase)`
    teacher: Optional[Dict[str, Tensor]]  # the teacher's outputs on the old heads, or None
    batch: Dict[str, Tensor]
    phase: Phase
    # set only at an architecture upgrade with feature distillation (`Method.upgrade_aligner`): the
    # encoder stages of both networks and the module holding the trainable projectors
    student_features: Optional[List[Tensor]] = None
    teacher_features: Optional[List[Tensor]] = None
    aligner: Optional[nn.Module] = None


@dataclass(frozen=True)
class Knob:
    """A method's stability knob, for `lhl tune`: the option that trades the old tasks against the
    new one, and its default grid, ordered from the most plastic value (the first, the finetune end:
    0 for a weight) to the most stable. Grids are log-spaced (`space="log"`: the values after 0;
    `"one_minus_log"`: 1 - value, for energy thresholds that approach 1) with five values each.
    `tied` moves other options with it, as (option, factor) pairs (DER++'s beta = 5 alpha, the
    ratio of Mammoth's best arguments)."""

    option: str
    grid: Tuple[float, ...]
    tied: Tuple[Tuple[str, float], ...] = ()
    space: str = "log"
    #: the method at the grid's first value is finetune bit for bit (tested), so `lhl tune` scores
    #: that point with the finetune runs it makes anyway instead of training it again
    zero_is_finetune: bool = False

    def overrides(self, value: float) -> List[str]:
        """The `key=value` overrides that set the knob to `value`."""
        out = [f"method.{self.option}={float(value)!r}"]
        out += [f"method.{name}={float(value) * factor!r}" for name, factor in self.tied]
        return out

    def beyond(self, values: Sequence[float], edge: str) -> Optional[float]:
        """The next grid point past the most stable value (`edge="stable"`), or between the finetune
        end and the next value (`edge="plastic"`), one log step on; None where there is none."""
        v = sorted(float(x) for x in values)  # both spaces grow more stable with the value
        t = [self._transform(x) for x in v]
        if edge == "stable" and len(t) >= 2 and t[-2] > 0:
            return self._inverse(t[-1] * t[-1] / t[-2])
        if edge == "plastic" and len(t) >= 3 and t[1] > 0 and t[2] > 0 and self.space == "log":
            return self._inverse(t[1] * t[1] / t[2])
        return None

    def _transform(self, x: float) -> float:
        return float(x) if self.space == "log" else 1.0 - float(x)

    def _inverse(self, t: float) -> float:
        return float(f"{(t if self.space == 'log' else 1.0 - t):.6g}")


@dataclass
class MethodOptions:
    """Options common to all methods (subclasses add their own fields)."""


class Method:
    """Base class: current-task supervised loss only (this is `finetune`)."""

    Options = MethodOptions
    uses_teacher: bool = False
    #: why the method cannot cross an architecture upgrade (`model.upgrade_at`), or None if it can
    upgrade_refusal: Optional[str] = None
    #: the stability knob `lhl tune` selects (None: the method has none and is not tuned)
    stability: Optional[Knob] = None

    def __init__(self, options: MethodOptions, tasks: Dict[str, TaskSpec]):
        self.opts = options
        self.tasks = tasks

    # --- the plan -----------------------------------------------------------------------------
    def plan(self, order: List[str]) -> List[PhaseRequest]:
        """What each phase trains (resolved into phases by `lhl.data.protocol.resolve_plan`)."""
        return sequential(order)

    def student_heads(self, phase: Phase) -> List[str]:
        """The heads the student runs each step: the phase's tasks, plus the old ones to distil."""
        return list(phase.train_tasks) + (list(phase.old_tasks) if self.uses_teacher_in(phase) else [])

    def uses_teacher_in(self, phase: Phase) -> bool:
        """Whether this phase distils its old tasks from the teacher (default: `uses_teacher`)."""
        return self.uses_teacher

    def upgrade_aligner(self, phase: Phase, student: nn.Module, teacher: nn.Module) -> Optional[nn.Module]:
        """At an architecture upgrade (`phase.upgrade`): a module of trainable pieces (projectors)
        the LightningModule trains with the network and hands back in `Step.aligner`, with both
        networks' encoder stages; None (the default) runs no feature pass."""
        return None

    # --- the loss -----------------------------------------------------------------------------
    def supervised_terms(self, step: Step) -> Terms:
        """One term per task whose labels this phase has: its supervised loss."""
        return {t: self.tasks[t].loss(step.student[t], step.batch[t]) for t in step.phase.train_tasks}

    def loss_terms(self, step: Step) -> Tuple[Terms, Terms]:
        """(terms, diagnostics): the loss is the sum of `terms`, each already weighted."""
        return self.supervised_terms(step), {}

    #: set by the loss-term diagnostics (`diag.every`) for the steps they measure; only then does a
    #: method keep the per-pixel loss maps that `pixel_loss_maps` returns
    record_pixel_maps: bool = False

    def pixel_loss_maps(self) -> Dict[str, Tuple[Tensor, Tensor]]:
        """{loss-term name: (per-pixel loss map [B, H, W], valid pixels [B, H, W])} of the last
        `loss_terms` call, for the terms that reduce a per-pixel map (pixel-wise distillation). Each
        map must lie in its term's autograd graph, so that d term / d map is the weight the term
        gives each pixel (`lhl.engine.diagnostics`). Default: none."""
        return {}

    # --- state and hooks ------------------------------------------------------------------------
    def to(self, device: torch.device) -> None:
        """Move the method's tensors to the training device; called once per phase, at its start."""

    def on_phase_start(self, phase: Phase, network: nn.Module) -> None:
        """Called before the phase's first step (the network has the phase's heads, on its device)."""

    def on_phase_end(self, phase: Phase, network: nn.Module, train_loader) -> None:
        """Called after the phase's fit with that phase's train loader (e.g. Fisher estimation)."""

    def before_optimizer_step(self, network: nn.Module) -> None:
        """Sees the gradients between backward (unscaled under AMP) and the optimiser step: the
        place to project or mask a gradient, or to snapshot the weights whose update to edit."""

    def after_optimizer_step(self, network: nn.Module) -> None:
        """Sees the weights right after each optimiser step (SI's path integral, an update projection)."""

    def observe(self, batch: Dict[str, Tensor], phase: Phase) -> None:
        """Sees every training batch after its optimiser step (ER's reservoir: as in Mammoth, a
        batch enters the buffer after the step it trained, so it is never replayed in that step)."""

    def state_dict(self) -> Dict[str, Any]:
        return {}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        pass
