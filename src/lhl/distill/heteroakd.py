"""HeteroAKD: distillation across architecture families through an aligned logits space.

Configured stages of teacher and student are projected by trainable 1x1 convs into C-class
logit maps Z_T, Z_S at one common size. Per pixel and class, reliability H = BCE(sigmoid(Z),
one-hot GT) (ignore pixels masked). KMM mixes a hybrid target Z_H = S_T Z_T + (1 - S_T) Z_S with
teacher share S_T = H_S / (H_T + H_S + eps); KEM weighs the soft-target loss from Z_H to Z_S by
W = softmax(H_S + max(0, H_S - H_H)). Targets and weights are detached. The total adds CE to GT
and plain logit KD (lambda_kd 0.1) on the final logits.

Choices the paper leaves open, as switches (defaults first):
- stages: `teacher_stages` / `student_stages` ([-2, -1]: the two deepest encoder stages; an int
  indexes the segmenter's `features`, "decoder" picks the decoder map), paired in order.
- `align_stride` (4): common size = input size / stride; labels are resized nearest.
- `weight_axis` ("class"): the softmax axis of W: "class" (over C per pixel), "pixel" (over the
  labelled pixels per image and class) or "all" (over C x pixels per image). W is rescaled to
  mean 1 over its axis, so a uniform W gives the unweighted loss.
- `kl_form` ("softmax"): per class, the term p_H,c log(p_H,c / p_S,c) - p_H,c + p_S,c of the
  generalised KL between the class distributions softmax(Z_H/tau), softmax(Z_S/tau). Each term is
  >= 0 and 0 iff p_S,c = p_H,c, and their unweighted sum is the categorical KL; so any W >= 0
  keeps p_S = p_H as the minimiser (the bare KL terms p_H,c log(p_H,c / p_S,c) would not: under
  a per-class W their optimum is p_S proportional to W p_H). "binary": per class, the KL between
  Bernoulli(sigmoid(Z_H/tau)) and Bernoulli(sigmoid(Z_S/tau)) (the sigmoid view H uses).
- `projector_relu` (false): a ReLU on the stage features before the 1x1 conv.
- `projector_supervision` ("teacher"): CE from the GT to the teacher's projected logits ("both":
  the student's too, a deep supervision of its stages; "none": neither, so the teacher projector
  stays random).
  The teacher projector is trained by this term only: Z_H and W carry no gradient.
- `kmm` / `kem` (true): false replaces Z_H by Z_T / W by 1 (ablations isolating each module).
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

from lhl.core.registry import DISTILLERS
from lhl.distill.baselines import Distiller, ce_loss, kd_loss
from lhl.distill.segmenters import bilinear_resize
from lhl.tasks.semantic import valid_classes

Stage = Union[int, str]
WEIGHT_AXES = ("class", "pixel", "all")
KL_FORMS = ("binary", "softmax")
PROJ_SUPERVISION = ("both", "teacher", "none")


def target_at(target: Tensor, size) -> Tensor:
    """Labels resized nearest to `size` (ignore values survive)."""
    if tuple(target.shape[-2:]) == tuple(size):
        return target
    return F.interpolate(target[:, None].float(), size=size, mode="nearest")[:, 0].long()


def aligned_target(target: Tensor, num_classes: int, size) -> Tuple[Tensor, Tensor, Tensor]:
    """Labels at `size`: one-hot float [B, C, h, w], valid mask [B, h, w] and the resized labels."""
    small = target_at(target, size)
    valid = valid_classes(small, num_classes)
    safe = torch.where(valid, small, torch.zeros_like(small))
    onehot = F.one_hot(safe.long(), num_classes).permute(0, 3, 1, 2).float() * valid[:, None]
    return onehot, valid, small


def reliability(logits: Tensor, onehot: Tensor, valid: Tensor) -> Tensor:
    """H [B, C, h, w]: per-pixel, per-class BCE of sigmoid(logits) against the one-hot label; 0 where ignored."""
    bce = F.binary_cross_entropy_with_logits(logits, onehot, reduction="none")
    return bce * valid[:, None]


def knowledge_mix(z_t: Tensor, z_s: Tensor, h_t: Tensor, h_s: Tensor, eps: float = 1e-6) -> Tuple[Tensor, Tensor]:
    """KMM: teacher share S_T = H_S / (H_T + H_S + eps) and hybrid Z_H = S_T Z_T + (1 - S_T) Z_S, detached."""
    s_t = (h_s / (h_t + h_s + eps)).detach()
    z_h = s_t * z_t.detach() + (1 - s_t) * z_s.detach()
    return s_t, z_h


def knowledge_weights(h_s: Tensor, h_h: Tensor, valid: Tensor, axis: str = "class") -> Tensor:
    """KEM: W = softmax(H_S + max(0, H_S - H_H)) over `axis`, rescaled to mean 1 there, detached.

    Ignored pixels are left out of the "pixel" / "all" softmax and get weight 0.
    """
    logit = (h_s + (h_s - h_h).clamp_min(0)).detach()
    b, c = logit.shape[:2]
    if axis == "class":
        return F.softmax(logit, 1) * c * valid[:, None]
    mask = valid[:, None].expand_as(logit)
    masked = logit.masked_fill(~mask, float("-inf"))
    if axis == "pixel":
        w = F.softmax(masked.reshape(b, c, -1), -1).reshape_as(logit)
        n = valid.flatten(1).sum(1).reshape(b, 1, 1, 1)
    elif axis == "all":
        w = F.softmax(masked.reshape(b, -1), -1).reshape_as(logit)
        n = c * valid.flatten(1).sum(1).reshape(b, 1, 1, 1)
    else:
        raise ValueError(f"kd.heteroakd.weight_axis='{axis}': choose one of {', '.join(WEIGHT_AXES)}")
    return torch.nan_to_num(w, nan=0.0) * n


def soft_target_terms(z_h: Tensor, z_s: Tensor, tau: float = 1.0, form: str = "softmax") -> Tensor:
    """Per-pixel, per-class soft-target loss [B, C, h, w] from the (detached) target Z_H to Z_S, times tau^2.

    Every term is >= 0 and 0 iff the student matches the target on that class (see `kl_form`).
    """
    t, s = z_h.detach() / tau, z_s / tau
    if form == "binary":
        p = torch.sigmoid(t)
        terms = p * (F.logsigmoid(t) - F.logsigmoid(s)) + (1 - p) * (F.logsigmoid(-t) - F.logsigmoid(-s))
    elif form == "softmax":
        t_log, s_log = F.log_softmax(t, 1), F.log_softmax(s, 1)
        p_t = t_log.exp()
        terms = p_t * (t_log - s_log) - p_t + s_log.exp()
    else:
        raise ValueError(f"kd.heteroakd.kl_form='{form}': choose one of {', '.join(KL_FORMS)}")
    return terms * tau**2


def weighted_soft_loss(terms: Tensor, weights: Tensor, valid: Tensor) -> Tensor:
    """Sum over classes of W * terms, averaged over labelled pixels."""
    return (weights * terms).sum(1).mul(valid).sum() / valid.sum().clamp_min(1)


def stage_map(out: Dict, stage: Stage) -> Tensor:
    """One configured stage of a segmenter output: an index into "features" or "decoder"."""
    if stage == "decoder":
        return out["decoder"]
    return out["features"][int(stage)]


def stage_channels(segmenter: nn.Module, stages: Sequence[Stage], key: str = "stages") -> List[int]:
    """Channels of the configured stages of a `Segmenter`; a bad stage is an error naming `key`."""
    n = len(segmenter.feature_channels)
    bad = [s for s in stages if s != "decoder" and not (type(s) is int and -n <= s < n)]
    if bad:
        raise ValueError(
            f"kd.heteroakd.{key}={list(stages)}: {bad} invalid for '{segmenter.name}', which has {n} "
            f"feature stages: use ints in [{-n}, {n - 1}] or \"decoder\""
        )
    return [segmenter.width if s == "decoder" else segmenter.feature_channels[s] for s in stages]


class Projector(nn.Sequential):
    """Stage features -> C-class logits: an optional ReLU, then a 1x1 conv."""

    def __init__(self, cin: int, num_classes: int, relu: bool = False):
        layers = [nn.ReLU()] if relu else []
        super().__init__(*layers, nn.Conv2d(cin, num_classes, 1))


@DISTILLERS.register("heteroakd")
class HeteroAKD(Distiller):
    """The HeteroAKD objective with its trainable projectors (the teacher's included)."""

    order, label = 3, "HeteroAKD"

    def __init__(
        self, num_classes: int, teacher_channels: Sequence[int], student_channels: Sequence[int],
        teacher_stages: Sequence[Stage] = (-2, -1), student_stages: Sequence[Stage] = (-2, -1),
        tau: float = 1.0, lambda_akd: float = 1.0, lambda_kd: float = 0.1, kd_tau: float = 1.0,
        lambda_proj: float = 1.0, align_stride: int = 4, weight_axis: str = "class",
        kl_form: str = "softmax", projector_relu: bool = False, projector_supervision: str = "teacher",
        kmm: bool = True, kem: bool = True, eps: float = 1e-6,
    ):
        super().__init__()
        if len(teacher_stages) != len(student_stages) or not teacher_stages:
            raise ValueError(
                f"kd.heteroakd: teacher_stages {list(teacher_stages)} and student_stages "
                f"{list(student_stages)} must be non-empty lists of the same length (paired in order)"
            )
        for key, val, allowed in (("weight_axis", weight_axis, WEIGHT_AXES), ("kl_form", kl_form, KL_FORMS),
                                  ("projector_supervision", projector_supervision, PROJ_SUPERVISION)):
            if val not in allowed:
                raise ValueError(f"kd.heteroakd.{key}='{val}': choose one of {', '.join(allowed)}")
        self.num_classes = int(num_classes)
        self.teacher_stages, self.student_stages = list(teacher_stages), list(student_stages)
        self.proj_t = nn.ModuleList(Projector(c, num_classes, projector_relu) for c in teacher_channels)
        self.proj_s = nn.ModuleList(Projector(c, num_classes, projector_relu) for c in student_channels)
        self.tau, self.kd_tau, self.eps = float(tau), float(kd_tau), float(eps)
        self.lambda_akd, self.lambda_kd, self.lambda_proj = float(lambda_akd), float(lambda_kd), float(lambda_proj)
        self.align_stride, self.weight_axis, self.kl_form = int(align_stride), weight_axis, kl_form
        self.projector_supervision, self.kmm, self.kem = projector_supervision, bool(kmm), bool(kem)

    @classmethod
    def from_config(cls, cfg: DictConfig, teacher: Optional[nn.Module], student: nn.Module) -> "HeteroAKD":
        """Projectors sized by the configured stages of `teacher` and `student` (checked here)."""
        h = OmegaConf.to_container(cfg.kd.heteroakd, resolve=True)
        return cls(
            student.num_classes, stage_channels(teacher, h["teacher_stages"], "teacher_stages"),
            stage_channels(student, h["student_stages"], "student_stages"), **h,
        )

    def aligned_logits(self, student_out: Dict, teacher_out: Dict, size) -> List[Tuple[Tensor, Tensor]]:
        """(Z_T, Z_S) per stage pair at `size`; the teacher's features carry no gradient."""
        pairs = []
        for i, (st, ss) in enumerate(zip(self.teacher_stages, self.student_stages)):
            z_t = self.proj_t[i](stage_map(teacher_out, st).detach())
            z_s = self.proj_s[i](stage_map(student_out, ss))
            pairs.append((bilinear_resize(z_t, size), bilinear_resize(z_s, size)))
        return pairs

    def stage_loss(self, z_t: Tensor, z_s: Tensor, onehot: Tensor, valid: Tensor) -> Dict[str, Tensor]:
        """KMM + KEM on one stage pair: the weighted soft-target loss and diagnostics."""
        h_t = reliability(z_t.detach(), onehot, valid)
        h_s = reliability(z_s.detach(), onehot, valid)
        if self.kmm:
            s_t, z_h = knowledge_mix(z_t, z_s, h_t, h_s, self.eps)
        else:
            s_t, z_h = torch.ones_like(z_t), z_t.detach()
        h_h = reliability(z_h, onehot, valid)
        if self.kem:
            w = knowledge_weights(h_s, h_h, valid, self.weight_axis)
        else:
            w = valid[:, None].expand_as(z_s).float()
        terms = soft_target_terms(z_h, z_s, self.tau, self.kl_form)
        n = valid.sum().clamp_min(1) * self.num_classes
        return {
            "akd": weighted_soft_loss(terms, w, valid),
            "teacher_share": (s_t * valid[:, None]).sum() / n,
            "h_t": h_t.sum() / n, "h_s": h_s.sum() / n, "h_h": h_h.sum() / n,
        }

    def forward(self, student_out: Dict, teacher_out: Dict, target: Tensor) -> Dict[str, Tensor]:
        h, w = target.shape[-2:]
        size = (max(1, h // self.align_stride), max(1, w // self.align_stride))
        onehot, valid, small = aligned_target(target, self.num_classes, size)
        pairs = self.aligned_logits(student_out, teacher_out, size)
        stages = [self.stage_loss(z_t, z_s, onehot, valid) for z_t, z_s in pairs]
        terms = {k: torch.stack([s[k] for s in stages]).mean() for k in stages[0]}
        proj = torch.zeros((), device=target.device)
        if self.projector_supervision != "none":
            proj = proj + torch.stack([ce_loss(z_t, small) for z_t, _ in pairs]).mean()
        if self.projector_supervision == "both":
            proj = proj + torch.stack([ce_loss(z_s, small) for _, z_s in pairs]).mean()
        ce = ce_loss(student_out["logits"], target)
        kd = kd_loss(student_out["logits"], teacher_out["logits"], self.kd_tau)
        loss = ce + self.lambda_kd * kd + self.lambda_akd * terms["akd"] + self.lambda_proj * proj
        return {"loss": loss, "ce": ce, "kd": kd, "proj": proj, **terms}

