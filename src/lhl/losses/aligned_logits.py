"""HeteroAKD's aligned-logits maths as pure functions: reliability H, KMM's mix, KEM's weights, the
soft-target terms, for `lhl.distill.heteroakd` and, in the losses layer below both, for the
lifelong architecture upgrade (`model.upgrade_at`, `lhl.methods.shared.upgrade`). Added for the
upgrade: `semantic_aligned_loss` (HeteroAKD's defaults on one pair of C-class maps) and
`regression_aligned_loss`, the same two modules per pixel for depth, normals and scalars, with the
task's own pixel loss as H.

Reliability (`reliability`, the `kd.heteroakd.reliability` switch):
- "softmax" (default, calibrated): H_c = BCE(p_c, y_c) with p = softmax(Z) over classes, i.e.
  -log p_y for the labelled class and -log(1 - p_c) for every other one. The projectors are
  trained only by shift-invariant losses (softmax CE to the labels, softmax KL to the hybrid), so
  each pixel's mean projected logit stays wherever initialisation put it; a sigmoid of the raw
  logits reads that arbitrary offset as confidence. p = softmax(Z) is exactly the quantity those
  losses train, so H is measured on the scale the projectors are calibrated on; it keeps one
  value per class (KMM and KEM need it per class), is 0 iff p is the one-hot label, and equals the
  sigmoid BCE of the per-class log-odds log(p_c / (1 - p_c)). In this mode Z_T and Z_S are also
  centred per pixel (mean over classes removed) before KMM mixes them: with independent offsets
  a_T, a_S the per-class mix S_T Z_T + (1 - S_T) Z_S would carry the spurious per-class bias
  S_T (a_T - a_S). Then S_T, Z_H, H_H, W and the softmax soft-target loss are all invariant to
  adding any per-pixel constant to Z_T or to Z_S.
- "sigmoid": the paper's literal H = BCE(sigmoid(Z), one-hot), raw logits mixed (the behaviour
  before the calibration; it depends on the logits' absolute level).
"""
from __future__ import annotations

import math
from typing import Dict, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from lhl.tasks.base import TaskSpec
from lhl.tasks.semantic import valid_classes

RELIABILITIES = ("softmax", "sigmoid")
WEIGHT_AXES = ("class", "pixel", "all")
KL_FORMS = ("binary", "softmax")


def log1mexp(x: Tensor) -> Tensor:
    """log(1 - exp(x)) for x <= 0, stable at both ends (clamped at the smallest normal float)."""
    tiny = torch.finfo(x.dtype).tiny
    near = torch.log((-torch.expm1(x)).clamp_min(tiny))
    far = torch.log1p(-torch.exp(x).clamp_max(1 - 1e-7))
    return torch.where(x > -math.log(2), near, far)


def centred(logits: Tensor) -> Tensor:
    """Logits minus their mean over classes (dim 1), per pixel."""
    return logits - logits.mean(1, keepdim=True)


def reliability(logits: Tensor, onehot: Tensor, valid: Tensor, form: str = "softmax") -> Tensor:
    """H [B, C, h, w]: per-pixel, per-class BCE against the one-hot label of softmax(logits) over
    classes ("softmax") or of sigmoid(logits) ("sigmoid"); 0 where ignored."""
    if form == "sigmoid":
        h = F.binary_cross_entropy_with_logits(logits, onehot, reduction="none")
    elif form == "softmax":
        log_p = F.log_softmax(logits, 1)
        h = -(onehot * log_p + (1 - onehot) * log1mexp(log_p))
    else:
        raise ValueError(f"kd.heteroakd.reliability='{form}': choose one of {', '.join(RELIABILITIES)}")
    return h * valid[:, None]


def knowledge_mix(z_t: Tensor, z_s: Tensor, h_t: Tensor, h_s: Tensor, eps: float = 1e-6):
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


def semantic_aligned_loss(z_t: Tensor, z_s: Tensor, label: Tensor, tau: float = 1.0, eps: float = 1e-6) -> Dict[str, Tensor]:
    """KMM + KEM on one pair of C-class logit maps against labels [B, H, W] at their size, with
    HeteroAKD's defaults (calibrated softmax reliability on centred logits, W over classes, the
    generalised softmax KL). Returns the loss `akd` and the mean `teacher_share` S_T."""
    onehot, valid, _ = aligned_target(label, z_s.shape[1], z_s.shape[-2:])
    z_t, z_s = centred(z_t), centred(z_s)
    h_t, h_s = reliability(z_t.detach(), onehot, valid), reliability(z_s.detach(), onehot, valid)
    s_t, z_h = knowledge_mix(z_t, z_s, h_t, h_s, eps)
    w = knowledge_weights(h_s, reliability(z_h, onehot, valid), valid, "class")
    loss = weighted_soft_loss(soft_target_terms(z_h, z_s, tau, "softmax"), w, valid)
    share = (s_t * valid[:, None]).sum() / (valid.sum().clamp_min(1) * z_s.shape[1])
    return {"akd": loss, "teacher_share": share.detach()}


def regression_aligned_loss(spec: TaskSpec, z_t: Tensor, z_s: Tensor, target: Tensor, eps: float = 1e-6) -> Dict[str, Tensor]:
    """The regression analogue on raw maps [B, task channels, H, W] against `target` (a label in the
    task's format): H = the task's own pixel loss of each activated map; KMM per pixel (one share
    for all channels); KEM over the valid pixels of each image (W has mean 1 there); the loss is
    the W-weighted pixel loss of the student's activated map against the activated hybrid."""
    h_t, valid = spec.pixel_loss(spec.activate(z_t.detach()), target)
    h_s, _ = spec.pixel_loss(spec.activate(z_s.detach()), target)
    s_t, z_h = knowledge_mix(z_t, z_s, h_t[:, None], h_s[:, None], eps)
    h_h, _ = spec.pixel_loss(spec.activate(z_h), target)
    w = knowledge_weights(h_s[:, None], h_h[:, None], valid, "pixel")[:, 0]
    loss_map, _ = spec.pixel_loss(spec.activate(z_s), spec.activate(z_h).detach())
    loss = (w * loss_map * valid).sum() / valid.sum().clamp_min(1)
    share = (s_t[:, 0] * valid).sum() / valid.sum().clamp_min(1)
    return {"akd": loss, "teacher_share": share.detach()}
