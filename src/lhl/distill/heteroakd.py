"""HeteroAKD: distillation across architecture families through an aligned logits space.

Configured stages of teacher and student are projected by trainable projectors into C-class
logit maps Z_T, Z_S at one common size. Per pixel and class, reliability H is the BCE of the
predicted class probability against the one-hot GT (ignore pixels masked; see `reliability`).
KMM mixes a hybrid target Z_H = S_T Z_T + (1 - S_T) Z_S with teacher share
S_T = H_S / (H_T + H_S + eps); KEM weighs the soft-target loss from Z_H to Z_S by
W = softmax(H_S + max(0, H_S - H_H)). Targets and weights are detached. The total adds CE to GT
and plain logit KD (lambda_kd 0.1) on the final logits. The per-pixel maths is in
`lhl.losses.aligned_logits`.

Choices the paper leaves open, as switches (defaults first):
- `reliability` ("softmax"): H from softmax(Z) over classes, with Z_T, Z_S centred per pixel
  before the mix: calibrated, since the projectors are trained by shift-invariant losses only and
  the absolute level of their logits means nothing. "sigmoid": the literal BCE(sigmoid(Z), GT) on
  raw logits (the earlier behaviour; S_T and W then move with a per-pixel offset of the logits).
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
  Bernoulli(sigmoid(Z_H/tau)) and Bernoulli(sigmoid(Z_S/tau)) (the sigmoid view; not
  shift-invariant, so it belongs with reliability "sigmoid").
- `projector` ("conv_bn_relu"): 1x1 conv, BatchNorm, ReLU (the sources' variant, also in
  `experiments/kd/heteroakd_ref.yaml`); measured better than "conv", a bare 1x1 conv
  (docs/benchmarks/distillation.md: +0.97 mIoU Transformer -> CNN, significant over 5 seeds, and +1.29 CNN ->
  Transformer, not significant). BatchNorm brings the two families' stage features, whose scales
  differ by two orders of magnitude (Swin's deepest stages RMS 32-52, ResNet's 0.7), to one scale.
  `projector_relu` (false): a ReLU on the stage features before either.
- `projector_supervision` ("teacher"): CE from the GT to the teacher's projected logits ("both":
  the student's too, a deep supervision of its stages; "none": neither, so the teacher projector
  stays random).
  The teacher projector is trained by this term only: Z_H and W carry no gradient.
- `kmm` / `kem` (true): false replaces Z_H by Z_T / W by 1 (ablations isolating each module).
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

from lhl.core.registry import DISTILLERS
from lhl.distill.baselines import Distiller, ce_loss, kd_loss
from lhl.losses.aligned_logits import (  # noqa: F401  (re-exported: the module's public maths)
    KL_FORMS, RELIABILITIES, WEIGHT_AXES, centred, knowledge_mix, knowledge_weights, reliability,
    soft_target_terms, weighted_soft_loss,
)
from lhl.distill.segmenters import bilinear_resize
from lhl.distill.stages import Stage, aligned_target, common_size, stage_channels, stage_map, target_at  # noqa: F401

PROJ_SUPERVISION = ("both", "teacher", "none")
PROJECTORS = ("conv", "conv_bn_relu")


class Projector(nn.Sequential):
    """Stage features -> C-class logits: an optional ReLU, then a 1x1 conv ("conv") or a 1x1 conv,
    BatchNorm and ReLU ("conv_bn_relu")."""

    def __init__(self, cin: int, num_classes: int, relu: bool = False, kind: str = "conv_bn_relu"):
        layers = [nn.ReLU()] if relu else []
        if kind == "conv":
            layers.append(nn.Conv2d(cin, num_classes, 1))
        elif kind == "conv_bn_relu":
            layers += [nn.Conv2d(cin, num_classes, 1, bias=False), nn.BatchNorm2d(num_classes), nn.ReLU()]
        else:
            raise ValueError(f"kd.heteroakd.projector='{kind}': choose one of {', '.join(PROJECTORS)}")
        super().__init__(*layers)


@DISTILLERS.register("heteroakd")
class HeteroAKD(Distiller):
    """The HeteroAKD objective with its trainable projectors (the teacher's included)."""

    order, label = 9, "HeteroAKD"

    def __init__(
        self, num_classes: int, teacher_channels: Sequence[int], student_channels: Sequence[int],
        teacher_stages: Sequence[Stage] = (-2, -1), student_stages: Sequence[Stage] = (-2, -1),
        tau: float = 1.0, lambda_akd: float = 1.0, lambda_kd: float = 0.1, kd_tau: float = 1.0,
        lambda_proj: float = 1.0, align_stride: int = 4, weight_axis: str = "class",
        kl_form: str = "softmax", reliability: str = "softmax", projector: str = "conv_bn_relu",
        projector_relu: bool = False, projector_supervision: str = "teacher",
        kmm: bool = True, kem: bool = True, eps: float = 1e-6,
    ):
        super().__init__()
        if len(teacher_stages) != len(student_stages) or not teacher_stages:
            raise ValueError(
                f"kd.heteroakd: teacher_stages {list(teacher_stages)} and student_stages "
                f"{list(student_stages)} must be non-empty lists of the same length (paired in order)"
            )
        for key, val, allowed in (("weight_axis", weight_axis, WEIGHT_AXES), ("kl_form", kl_form, KL_FORMS),
                                  ("reliability", reliability, RELIABILITIES), ("projector", projector, PROJECTORS),
                                  ("projector_supervision", projector_supervision, PROJ_SUPERVISION)):
            if val not in allowed:
                raise ValueError(f"kd.heteroakd.{key}='{val}': choose one of {', '.join(allowed)}")
        self.num_classes = int(num_classes)
        self.teacher_stages, self.student_stages = list(teacher_stages), list(student_stages)
        self.proj_t = nn.ModuleList(Projector(c, num_classes, projector_relu, projector) for c in teacher_channels)
        self.proj_s = nn.ModuleList(Projector(c, num_classes, projector_relu, projector) for c in student_channels)
        self.tau, self.kd_tau, self.eps = float(tau), float(kd_tau), float(eps)
        self.lambda_akd, self.lambda_kd, self.lambda_proj = float(lambda_akd), float(lambda_kd), float(lambda_proj)
        self.align_stride, self.weight_axis, self.kl_form = int(align_stride), weight_axis, kl_form
        self.reliability = reliability
        self.projector_supervision, self.kmm, self.kem = projector_supervision, bool(kmm), bool(kem)

    @classmethod
    def from_config(cls, cfg: DictConfig, teacher: Optional[nn.Module], student: nn.Module) -> "HeteroAKD":
        """Projectors sized by the configured stages of `teacher` and `student` (checked here)."""
        h = OmegaConf.to_container(cfg.kd.heteroakd, resolve=True)
        return cls(
            student.num_classes, stage_channels(teacher, h["teacher_stages"], "kd.heteroakd.teacher_stages"),
            stage_channels(student, h["student_stages"], "kd.heteroakd.student_stages"), **h,
        )

    def aligned_logits(self, student_out: Dict, teacher_out: Dict, size) -> List[Tuple[Tensor, Tensor]]:
        """(Z_T, Z_S) per stage pair at `size`; the teacher's features carry no gradient."""
        pairs = []
        for i, (st, ss) in enumerate(zip(self.teacher_stages, self.student_stages)):
            z_t = self.proj_t[i](stage_map(teacher_out, st).detach())
            z_s = self.proj_s[i](stage_map(student_out, ss))
            pairs.append((bilinear_resize(z_t, size), bilinear_resize(z_s, size)))
        return pairs

    def mix_and_weights(self, z_t: Tensor, z_s: Tensor, onehot: Tensor, valid: Tensor) -> Dict[str, Tensor]:
        """KMM and KEM on one stage pair (all detached): S_T, Z_H, W and the reliabilities H_T, H_S, H_H."""
        z_t, z_s = z_t.detach(), z_s.detach()
        if self.reliability == "softmax":
            z_t, z_s = centred(z_t), centred(z_s)
        h_t = reliability(z_t, onehot, valid, self.reliability)
        h_s = reliability(z_s, onehot, valid, self.reliability)
        if self.kmm:
            s_t, z_h = knowledge_mix(z_t, z_s, h_t, h_s, self.eps)
        else:
            s_t, z_h = torch.ones_like(z_t), z_t
        h_h = reliability(z_h, onehot, valid, self.reliability)
        if self.kem:
            w = knowledge_weights(h_s, h_h, valid, self.weight_axis)
        else:
            w = valid[:, None].expand_as(z_s).float()
        return {"s_t": s_t, "z_h": z_h, "w": w, "h_t": h_t, "h_s": h_s, "h_h": h_h}

    def stage_loss(self, z_t: Tensor, z_s: Tensor, onehot: Tensor, valid: Tensor) -> Dict[str, Tensor]:
        """KMM + KEM on one stage pair: the weighted soft-target loss and diagnostics."""
        m = self.mix_and_weights(z_t, z_s, onehot, valid)
        terms = soft_target_terms(m["z_h"], z_s, self.tau, self.kl_form)
        n = valid.sum().clamp_min(1) * self.num_classes
        return {
            "akd": weighted_soft_loss(terms, m["w"], valid),
            "teacher_share": (m["s_t"] * valid[:, None]).sum() / n,
            "h_t": m["h_t"].sum() / n, "h_s": m["h_s"].sum() / n, "h_h": m["h_h"].sum() / n,
        }

    def forward(self, student_out: Dict, teacher_out: Dict, target: Tensor) -> Dict[str, Tensor]:
        size = common_size(target, self.align_stride)
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
