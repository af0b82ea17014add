"""Supervised CE and the baselines HeteroAKD is compared with: student alone, logit KD, CWD.

Every distiller is a `Distiller` registered in `lhl.core.registry.DISTILLERS` under its `run.kd`
name, built by `from_config(cfg, teacher, student)` and called as
`distiller(student_out, teacher_out, target)` with segmenter outputs (`{"logits", "features",
"decoder"}`; `teacher_out` is None for the student alone) and labels [B, H, W] (-1 = ignore); it
returns named loss terms, the total under "loss".
"""
from __future__ import annotations

from typing import Dict, Optional

import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

from lhl.core.registry import DISTILLERS
from lhl.tasks.semantic import masked_nll


def ce_loss(logits: Tensor, target: Tensor) -> Tensor:
    """Cross-entropy averaged over labelled pixels (`masked_nll`: deterministic on CUDA)."""
    nll, valid = masked_nll(F.log_softmax(logits, 1), target)
    return nll.sum() / valid.sum().clamp_min(1)


def kd_loss(student: Tensor, teacher: Tensor, tau: float = 1.0, valid: Optional[Tensor] = None) -> Tensor:
    """Hinton KD per pixel: tau^2 KL(softmax(t/tau) || softmax(s/tau)) over classes, mean over pixels."""
    t_log = F.log_softmax(teacher.detach() / tau, 1)
    kl = (t_log.exp() * (t_log - F.log_softmax(student / tau, 1))).sum(1)
    if valid is None:
        return kl.mean() * tau**2
    return (kl * valid).sum() / valid.sum().clamp_min(1) * tau**2


def cwd_loss(student: Tensor, teacher: Tensor, tau: float = 4.0) -> Tensor:
    """Channel-wise distillation (Shu et al. 2021): per class map, softmax over space, KL, tau^2 mean."""
    b, c = student.shape[:2]
    t_log = F.log_softmax(teacher.detach().reshape(b, c, -1) / tau, -1)
    s_log = F.log_softmax(student.reshape(b, c, -1) / tau, -1)
    return (t_log.exp() * (t_log - s_log)).sum(-1).mean() * tau**2


class Distiller(nn.Module):
    """A loss module of one `run.kd` method: `label` names its table row, `order` places it there."""

    needs_teacher = True
    order = 100
    label = ""

    @classmethod
    def from_config(cls, cfg: DictConfig, teacher: Optional[nn.Module], student: nn.Module) -> "Distiller":
        """The distiller for this run's config (the segmenters give channels and stages)."""
        return cls()


@DISTILLERS.register("none")
class StudentOnly(Distiller):
    """Lower bound: cross-entropy to the labels only."""

    needs_teacher = False
    order, label = 0, "student alone"

    def forward(self, student_out: Dict, teacher_out: Optional[Dict], target: Tensor) -> Dict[str, Tensor]:
        ce = ce_loss(student_out["logits"], target)
        return {"loss": ce, "ce": ce}


@DISTILLERS.register("kd")
class LogitKD(Distiller):
    """CE + weight * pixel-wise logit KD from the teacher's final logits (all pixels)."""

    order, label = 1, "logit KD"

    def __init__(self, tau: float = 1.0, weight: float = 1.0):
        super().__init__()
        self.tau, self.weight = float(tau), float(weight)

    @classmethod
    def from_config(cls, cfg: DictConfig, teacher: Optional[nn.Module], student: nn.Module) -> "LogitKD":
        return cls(**OmegaConf.to_container(cfg.kd.kd, resolve=True))

    def forward(self, student_out: Dict, teacher_out: Dict, target: Tensor) -> Dict[str, Tensor]:
        ce = ce_loss(student_out["logits"], target)
        kd = kd_loss(student_out["logits"], teacher_out["logits"], self.tau)
        return {"loss": ce + self.weight * kd, "ce": ce, "kd": kd}


@DISTILLERS.register("cwd")
class ChannelWiseKD(Distiller):
    """CE + weight * CWD on the final logits (defaults of the CWD paper: tau 4, weight 3)."""

    order, label = 2, "CWD"

    def __init__(self, tau: float = 4.0, weight: float = 3.0):
        super().__init__()
        self.tau, self.weight = float(tau), float(weight)

    @classmethod
    def from_config(cls, cfg: DictConfig, teacher: Optional[nn.Module], student: nn.Module) -> "ChannelWiseKD":
        return cls(**OmegaConf.to_container(cfg.kd.cwd, resolve=True))

    def forward(self, student_out: Dict, teacher_out: Dict, target: Tensor) -> Dict[str, Tensor]:
        ce = ce_loss(student_out["logits"], target)
        cwd = cwd_loss(student_out["logits"], teacher_out["logits"], self.tau)
        return {"loss": ce + self.weight * cwd, "ce": ce, "cwd": cwd}
