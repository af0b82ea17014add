"""Pseudo-label distillation: the shared loop of LwF and HAD over the old tasks."""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

from torch import Tensor

from lhl.methods.base import Method


class PseudoLabelDistillation(Method):
    """L = L_new + new * sum_k term_k(student_k, pseudo_label(teacher_k)).

    Subclasses define `old_task_term`; every term and its parts are logged as
    `<log_prefix>/<task>` and `<log_prefix>/<task>/<part>`.
    """

    uses_teacher = True
    log_prefix = "distill"

    def old_task_term(self, name: str, student: Tensor, pseudo: Tensor) -> Tuple[Tensor, Dict[str, Tensor]]:
        raise NotImplementedError

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
            term, parts = self.old_task_term(name, student[name], self.tasks[name].pseudo_label(teacher[name]))
            logs[f"{self.log_prefix}/{name}"] = term.detach()
            for key, value in parts.items():
                logs[f"{self.log_prefix}/{name}/{key}"] = value
            distill = distill + term
        logs[f"loss/{self.log_prefix}"] = distill.detach()
        return total + self.opts.new * distill, logs
