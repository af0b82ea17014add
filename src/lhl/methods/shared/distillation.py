"""Pseudo-label distillation: the shared loop of LwF, HAD and iCaRL over the old tasks, and what
they do at an architecture upgrade (`lhl.methods.shared.upgrade`)."""
from __future__ import annotations

from typing import Dict, Optional, Tuple

from torch import Tensor, nn

from lhl.data.protocol import Phase
from lhl.methods.base import Method, Step, Terms
from lhl.methods.shared.upgrade import AlignedFeatureKD, upgrade_settings


class PseudoLabelDistillation(Method):
    """L = L_new + new * sum_k term_k(student_k, pseudo_label(teacher_k)).

    Subclasses define `old_task_term`; each old task's weighted term is the loss term
    `<log_prefix>/<task>` and its unweighted parts are diagnostics `<log_prefix>/<task>/<part>`.
    At an upgrade phase the aligned-feature terms are added when `Step.aligner` is set.
    """

    uses_teacher = True
    log_prefix = "distill"

    def old_task_term(self, name: str, student: Tensor, pseudo: Tensor) -> Tuple[Tensor, Dict[str, Tensor]]:
        raise NotImplementedError

    def plain_term(self, name: str, student: Tensor, pseudo: Tensor) -> Tensor:
        """The task's own loss against the pseudo-label (LwF's, iCaRL's term): `TaskSpec.loss`,
        computed from the task's loss map in the same operations, so that the map can be kept."""
        sink = self.pixel_map_sink(name)
        if sink is None:
            return self.tasks[name].loss(student, pseudo)
        loss_map, valid = self.tasks[name].pixel_loss(student, pseudo)
        sink["loss_map"], sink["valid"] = loss_map, valid
        return (loss_map * valid).sum() / valid.sum().clamp_min(1)

    # --- the per-pixel loss maps of the old-task terms (the loss-term diagnostics) -----------------
    def pixel_map_sink(self, name: str) -> Optional[Dict[str, Tensor]]:
        """Where old task `name`'s term leaves its loss map and valid pixels, or None when the
        diagnostics do not measure this step (nothing is kept then)."""
        if not self.record_pixel_maps:
            return None
        return self._pixel_maps.setdefault(f"{self.log_prefix}/{name}", {})

    def pixel_loss_maps(self) -> Dict[str, Tuple[Tensor, Tensor]]:
        return {k: (m["loss_map"], m["valid"]) for k, m in getattr(self, "_pixel_maps", {}).items() if m}

    def weight(self, step: Step) -> float:
        """The factor of every old task's term (`new`)."""
        return float(self.opts.new)

    def uses_teacher_in(self, phase: Phase) -> bool:
        """Not at an upgrade whose old heads start blank (`method.upgrade_old_heads=blank`), and not
        at `new = 0` (the finetune end of `lhl tune`'s grid), where the method is finetune: an old
        head run with a zero-weighted term still gets a (zero) gradient, so Adam's coupled weight
        decay (`train.weight_decay`) alone would move each of its weights by about the learning rate
        per step (the normalised update of a pure decay gradient is its sign) and erase the head
        within a phase, which finetune, whose old heads get no gradient at all, never does."""
        if float(getattr(self.opts, "new", 1.0)) == 0.0:
            return False
        return not (phase.upgrade and upgrade_settings(self.opts).upgrade_old_heads == "blank")

    def upgrade_aligner(self, phase: Phase, student: nn.Module, teacher: nn.Module) -> Optional[nn.Module]:
        o = upgrade_settings(self.opts)
        if not (phase.upgrade and phase.old_tasks and o.upgrade_feature_kd and self.uses_teacher_in(phase)):
            return None
        return AlignedFeatureKD(
            {t: self.tasks[t] for t in phase.old_tasks}, teacher.backbone.channels, student.backbone.channels,
            o.upgrade_feature_stages, o.upgrade_feature_tau, o.upgrade_feature_weight,
        )

    def loss_terms(self, step: Step) -> Tuple[Terms, Terms]:
        self._pixel_maps: Dict[str, Dict[str, Tensor]] = {}
        terms, diagnostics = self.supervised_terms(step), {}
        if step.teacher is None:
            return terms, diagnostics
        weight, pseudo = self.weight(step), {}
        for name in step.phase.old_tasks:
            pseudo[name] = self.tasks[name].pseudo_label(step.teacher[name])
            term, parts = self.old_task_term(name, step.student[name], pseudo[name])
            terms[f"{self.log_prefix}/{name}"] = weight * term
            diagnostics.update({f"{self.log_prefix}/{name}/{k}": v for k, v in parts.items()})
        if step.aligner is not None:
            aligned, parts = step.aligner(step.student_features, step.teacher_features, pseudo)
            terms.update(aligned)
            diagnostics.update(parts)
        return terms, diagnostics
