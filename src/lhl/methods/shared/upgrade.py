"""Distillation across an architecture upgrade (`model.upgrade_at`): the options LwF and HAD take
for it, and the aligned-feature term.

At the upgrade phase the student is a new network of another family with blank heads for every
seen task, and the old network is the frozen teacher. Old tasks are kept only by distillation on
the new phase's images:

- output terms: the method's own (`lwf/<task>`, `had/<task>`) on every old head, against the old
  network's pseudo-labels, as at any phase boundary;
- aligned-feature terms (`upgrade_feature_kd`, HeteroAKD's idea per old task): the configured
  encoder stages of both networks are projected by trainable 1x1 convs into that task's output
  space (C logits for a semantic task, its own channels for depth, normals, scalars) and
  upsampled to the input size. Old tasks have no ground truth in the new phase, so the teacher's
  pseudo-label plays its part. Semantic: HeteroAKD's KMM + KEM over classes. Regression: the same
  two modules per pixel with the task's own pixel loss as the reliability H
  (`lhl.losses.aligned_logits.regression_aligned_loss`). The term is `upgrade_akd/<task>`; the
  teacher's projector learns only from `upgrade_proj/<task>`, the task's own loss of its activated
  map against the pseudo-label (HeteroAKD's projector supervision "teacher"); the student's
  projector and the new encoder learn from the aligned term.

`upgrade_old_heads: blank` is the control: the old heads start blank and are not distilled (no
teacher pass at the upgrade phase).
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass, field
from typing import Dict, List, Sequence, Tuple

import torch
from torch import Tensor, nn

from lhl.losses.aligned_logits import regression_aligned_loss, semantic_aligned_loss
from lhl.methods.base import MethodOptions
from lhl.models.heads import upsample_to
from lhl.tasks.base import TaskSpec

OLD_HEADS = ("distill", "blank")


@dataclass
class UpgradeOptions(MethodOptions):
    """What a distillation method does at `model.upgrade_at` (no effect without an upgrade)."""

    upgrade_old_heads: str = "distill"  # distill: output terms on every old head; blank: none
    upgrade_feature_kd: bool = True  # the aligned-feature terms besides the output terms
    upgrade_feature_weight: float = 1.0  # factor of every upgrade_akd/<task> term
    upgrade_feature_stages: List[int] = field(default_factory=lambda: [-2, -1])  # encoder stages, paired in order
    upgrade_feature_tau: float = 1.0  # temperature of the semantic soft-target loss

    def __post_init__(self):
        if self.upgrade_old_heads not in OLD_HEADS:
            raise ValueError(f"method.upgrade_old_heads must be one of {OLD_HEADS}, got {self.upgrade_old_heads!r}")
        if not isinstance(self.upgrade_feature_kd, bool):
            raise ValueError(f"method.upgrade_feature_kd must be true or false, got {self.upgrade_feature_kd!r}")
        for name in ("upgrade_feature_weight", "upgrade_feature_tau"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or value < 0 or (
                    name == "upgrade_feature_tau" and value == 0):
                raise ValueError(f"method.{name} must be a number > 0 (weight: >= 0), got {value!r}")
        stages = list(self.upgrade_feature_stages)
        if not stages or any(isinstance(s, bool) or not isinstance(s, int) for s in stages):
            raise ValueError(
                f"method.upgrade_feature_stages must be a non-empty list of encoder stage indices "
                f"(e.g. [-2, -1], the two deepest), got {self.upgrade_feature_stages!r}"
            )
        self.upgrade_feature_stages = stages


def upgrade_settings(options) -> UpgradeOptions:
    """The method's upgrade options; a method without them distils its old heads' outputs only."""
    return options if isinstance(options, UpgradeOptions) else UpgradeOptions(upgrade_feature_kd=False)


def check_stages(stages: Sequence[int], n: int, network: str) -> None:
    bad = [s for s in stages if not -n <= s < n]
    if bad:
        raise ValueError(
            f"method.upgrade_feature_stages={list(stages)}: {bad} out of range for the {network}, which has "
            f"{n} encoder stages; use indices in [{-n}, {n - 1}] (e.g. [-2, -1], the two deepest)"
        )


class AlignedFeatureKD(nn.Module):
    """Per old task and stage pair, a teacher and a student 1x1 projector into the task's output
    space; `forward` returns the weighted loss terms and diagnostics (module docstring)."""

    def __init__(self, specs: Dict[str, TaskSpec], teacher_channels: Sequence[int], student_channels: Sequence[int],
                 stages: Sequence[int], tau: float = 1.0, weight: float = 1.0):
        super().__init__()
        check_stages(stages, len(teacher_channels), "old (teacher) network")
        check_stages(stages, len(student_channels), "new (student) network")
        self.specs, self.stages = dict(specs), list(stages)
        self.tau, self.weight = float(tau), float(weight)
        self.proj_t = nn.ModuleDict({t: nn.ModuleList(nn.Conv2d(teacher_channels[s], spec.channels, 1)
                                                      for s in self.stages) for t, spec in self.specs.items()})
        self.proj_s = nn.ModuleDict({t: nn.ModuleList(nn.Conv2d(student_channels[s], spec.channels, 1)
                                                      for s in self.stages) for t, spec in self.specs.items()})

    def task_terms(self, name: str, student_feats: List[Tensor], teacher_feats: List[Tensor], target: Tensor):
        """(aligned loss, teacher-projector loss, mean teacher share) of one old task, averaged over stages."""
        spec, size = self.specs[name], target.shape[-2:]
        akd, proj, share = [], [], []
        for i, s in enumerate(self.stages):
            z_t = upsample_to(self.proj_t[name][i](teacher_feats[s].detach()), size)
            z_s = upsample_to(self.proj_s[name][i](student_feats[s]), size)
            if spec.kind == "semantic":  # classes: HeteroAKD's own form
                out = semantic_aligned_loss(z_t, z_s, target, self.tau)
            else:
                out = regression_aligned_loss(spec, z_t, z_s, target)
            akd.append(out["akd"])
            share.append(out["teacher_share"])
            proj.append(spec.loss(spec.activate(z_t), target))
        return torch.stack(akd).mean(), torch.stack(proj).mean(), torch.stack(share).mean()

    def forward(self, student_feats: List[Tensor], teacher_feats: List[Tensor],
                pseudo: Dict[str, Tensor]) -> Tuple[Dict[str, Tensor], Dict[str, Tensor]]:
        terms, diagnostics = {}, {}
        for name in self.specs:
            akd, proj, share = self.task_terms(name, student_feats, teacher_feats, pseudo[name])
            terms[f"upgrade_akd/{name}"] = self.weight * akd
            terms[f"upgrade_proj/{name}"] = proj
            diagnostics[f"upgrade/{name}/teacher_share"] = share
        return terms, diagnostics
