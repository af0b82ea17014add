"""Pseudo-label distillation: the shared loop of LwF and HAD over the old tasks."""
from __future__ import annotations

from typing import Dict, Tuple

from torch import Tensor

from lhl.methods.base import Method, Step, Terms


class PseudoLabelDistillation(Method):
    """L = L_new + new * sum_k term_k(student_k, pseudo_label(teacher_k)).

    Subclasses define `old_task_term`; each old task's weighted term is the loss term
    `<log_prefix>/<task>` and its unweighted parts are diagnostics `<log_prefix>/<task>/<part>`.
    """

    uses_teacher = True
    log_prefix = "distill"

    def old_task_term(self, name: str, student: Tensor, pseudo: Tensor) -> Tuple[Tensor, Dict[str, Tensor]]:
        raise NotImplementedError

    def weight(self, step: Step) -> float:
        """The factor of every old task's term (`new`)."""
        return float(self.opts.new)

    def loss_terms(self, step: Step) -> Tuple[Terms, Terms]:
        terms, diagnostics = self.supervised_terms(step), {}
        if step.teacher is None:
            return terms, diagnostics
        weight = self.weight(step)
        for name in step.phase.old_tasks:
            pseudo = self.tasks[name].pseudo_label(step.teacher[name])
            term, parts = self.old_task_term(name, step.student[name], pseudo)
            terms[f"{self.log_prefix}/{name}"] = weight * term
            diagnostics.update({f"{self.log_prefix}/{name}/{k}": v for k, v in parts.items()})
        return terms, diagnostics
