"""lwf: plain self-distillation. Every old task is trained on the frozen teacher's pseudo-label with
the current-task loss form (HAD without its DB and SG terms), weighted by `new` as in HAD."""
from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from torch import Tensor

from lhl.methods.base import Method, MethodOptions
from lhl.registry import METHODS


@METHODS.register("lwf")
class LwF(Method):
    """L = L_new + new * sum_k task_k.loss(student_k, pseudo_label(teacher_k)); logs `lwf/<task>`."""

    uses_teacher = True

    @dataclass
    class Options(MethodOptions):
        new: float = 3.0

        def __post_init__(self):
            if isinstance(self.new, bool) or not isinstance(self.new, numbers.Real) or self.new < 0:
                raise ValueError(f"method.new must be a number >= 0, got {self.new!r}")

    def training_loss(
        self,
        student: Dict[str, Tensor],
        teacher: Optional[Dict[str, Tensor]],
        batch: Dict[str, Tensor],
        current: List[str],
        old: List[str],
    ) -> Tuple[Tensor, Dict[str, Tensor]]:
        total, logs = self.current_loss(student, batch, current)
        if teacher is None or not old:
            return total, logs
        distill = total.new_zeros(())
        for name in old:
            task = self.tasks[name]
            term = task.loss(student[name], task.pseudo_label(teacher[name]))
            logs[f"lwf/{name}"] = term.detach()
            distill = distill + term
        return total + self.opts.new * distill, logs
