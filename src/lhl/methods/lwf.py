"""lwf: plain self-distillation. Every old task is trained on the frozen teacher's pseudo-label with
the current-task loss form (HAD without its DB and SG terms), weighted by `new` as in HAD."""
from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Dict, Tuple

from torch import Tensor

from lhl.methods.shared.distillation import PseudoLabelDistillation
from lhl.methods.shared.upgrade import UpgradeOptions
from lhl.core.registry import METHODS
from lhl.methods.base import Knob


@METHODS.register("lwf")
class LwF(PseudoLabelDistillation):
    """L = L_new + new * sum_k task_k.loss(student_k, pseudo_label(teacher_k)); logs `lwf/<task>`."""

    stability = Knob("new", (0.0, 0.3, 1.0, 3.0, 10.0), zero_is_finetune=True)

    log_prefix = "lwf"

    @dataclass
    class Options(UpgradeOptions):
        """`new` plus the architecture-upgrade options (`lhl.methods.shared.upgrade`)."""

        new: float = 3.0

        def __post_init__(self):
            super().__post_init__()
            if isinstance(self.new, bool) or not isinstance(self.new, numbers.Real) or self.new < 0:
                raise ValueError(f"method.new must be a number >= 0, got {self.new!r}")

    def old_task_term(self, name: str, student: Tensor, pseudo: Tensor) -> Tuple[Tensor, Dict[str, Tensor]]:
        return self.plain_term(name, student, pseudo), {}
