"""Af-DCD: augmentation-free dense contrastive distillation (Fan et al., NeurIPS 2023).

The student's last encoder stage is aligned to the teacher's width (1x1 conv), resized
bilinearly to the teacher stage's size, randomly masked (each pixel zeroed with probability
`mask_ratio`, training only) and decoded by a projector (3x3 conv, ReLU, 3x3 conv at the
teacher's width) into P; then
- feature mimicking: sum of (P - T)^2 over channels and pixels, mean over the images;
- omni-contrast: P and T are max-pooled (`pool_size`), cut into `patch_size` patches and their
  channels into `groups` groups; a token is (pixel, channel group) of a patch. For every student
  token, the positive is the teacher token at the same pixel and group, the negatives are the
  teacher tokens of the other groups at every pixel of the patch; similarity = -L1 distance, InfoNCE
  (cross-entropy) at temperature `tau`, summed over tokens and divided by pixels and images.
Plus CE and pixel-wise logit KD.

Defaults: github.com/OSVAI/Af-DCD at 5b086a7, losses/ocmgd.py (tau_ocd 0.07, M_ocd 16 groups,
pool_size 4, patch 4 x 4, mask ratio 0.75, the projector) and
train_scripts/cityscape/deeplabv3_r101_mbv2_r18_v2_ocmgd.sh with train_ocmgd.py (lambda_fd 2e-6,
lambda_ctr 0.005, lambda_kd 1 at temperature 1, random masking). The mimicking sum grows with the
map size: the reference weight is for 64 x 128 maps (512 x 1024 crops at stride 8). Maps smaller
than a pooled patch are adapted: pooling is skipped when the pooled map would be smaller than one
patch, the patch shrinks to the map, and rows / columns beyond whole patches are cropped (as the
reference does on CamVid).
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

from lhl.core.registry import DISTILLERS
from lhl.distill.baselines import Distiller, ce_loss, kd_loss
from lhl.distill.segmenters import bilinear_resize
from lhl.distill.stages import Stage, stage_channels, stage_map


def to_tokens(x: Tensor, patch, groups: int) -> Tensor:
    """[B, C, H, W] -> [B * patches, ph * pw * groups, C / groups]; token index = pixel * groups + group."""
    b, c, h, w = x.shape
    ph, pw = patch
    x = x.reshape(b, groups, c // groups, h // ph, ph, w // pw, pw)
    return x.permute(0, 3, 5, 4, 6, 1, 2).reshape(-1, ph * pw * groups, c // groups)


def contrast_loss(pred: Tensor, target: Tensor, groups: int = 16, tau: float = 0.07, pool_size: int = 4,
                  patch_size: Sequence[int] = (4, 4)) -> Tensor:
    """The omni-contrastive loss between student P and (detached) teacher T, both [B, C, H, W]."""
    target = target.detach()
    ph, pw = patch_size
    if pool_size > 1 and pred.shape[-2] >= pool_size * ph and pred.shape[-1] >= pool_size * pw:
        pred, target = F.max_pool2d(pred, pool_size), F.max_pool2d(target, pool_size)
    b, _, h, w = pred.shape
    ph, pw = min(ph, h), min(pw, w)
    h, w = h - h % ph, w - w % pw
    pred, target = pred[..., :h, :w], target[..., :h, :w]
    p, t = to_tokens(pred, (ph, pw), groups), to_tokens(target, (ph, pw), groups)
    sim = -torch.cdist(p, t, p=1) / tau  # [patches, K, K]
    group = torch.arange(p.shape[1], device=p.device) % groups
    diag = torch.eye(p.shape[1], dtype=torch.bool, device=p.device)
    keep = diag | (group[:, None] != group[None, :])  # the positive and the other groups' tokens
    logits = sim.masked_fill(~keep, float("-inf"))
    nce = torch.logsumexp(logits, -1) - sim.diagonal(dim1=-2, dim2=-1)
    return nce.sum() / (h * w) / b


def mimic_loss(pred: Tensor, target: Tensor) -> Tensor:
    """Sum of squared errors over channels and pixels, mean over images (the reference's MSE sum / B)."""
    return (pred - target.detach()).pow(2).sum() / pred.shape[0]


@DISTILLERS.register("afdcd")
class AugFreeDenseContrastKD(Distiller):
    """CE + lambda_kd * logit KD + lambda_fd * masked feature mimicking + lambda_ctr * omni-contrast."""

    order, label = 5, "Af-DCD"

    def __init__(self, student_channels: int, teacher_channels: int, lambda_kd: float = 1.0,
                 kd_tau: float = 1.0, lambda_fd: float = 2e-6, lambda_ctr: float = 0.005, tau: float = 0.07,
                 groups: int = 16, pool_size: int = 4, patch_size: Sequence[int] = (4, 4),
                 mask_ratio: float = 0.75, teacher_stage: Stage = -1, student_stage: Stage = -1):
        super().__init__()
        if groups < 2 or teacher_channels % groups:
            raise ValueError(f"kd.afdcd.groups={groups}: needs at least 2 groups that divide the teacher stage's "
                             f"{teacher_channels} channels (e.g. {_divisors(teacher_channels)})")
        if len(patch_size) != 2 or min(patch_size) < 1 or not 0 <= mask_ratio < 1:
            raise ValueError(f"kd.afdcd: patch_size={list(patch_size)} must be two ints >= 1 and "
                             f"mask_ratio={mask_ratio} in [0, 1)")
        same = student_channels == teacher_channels
        self.align = nn.Identity() if same else nn.Conv2d(student_channels, teacher_channels, 1)
        self.projector = nn.Sequential(nn.Conv2d(teacher_channels, teacher_channels, 3, padding=1), nn.ReLU(),
                                       nn.Conv2d(teacher_channels, teacher_channels, 3, padding=1))
        self.lambda_kd, self.kd_tau, self.lambda_fd = float(lambda_kd), float(kd_tau), float(lambda_fd)
        self.lambda_ctr, self.tau, self.groups = float(lambda_ctr), float(tau), int(groups)
        self.pool_size, self.patch_size, self.mask_ratio = int(pool_size), tuple(patch_size), float(mask_ratio)
        self.teacher_stage, self.student_stage = teacher_stage, student_stage

    @classmethod
    def from_config(cls, cfg: DictConfig, teacher: Optional[nn.Module], student: nn.Module) -> "AugFreeDenseContrastKD":
        c = OmegaConf.to_container(cfg.kd.afdcd, resolve=True)
        (ct,) = stage_channels(teacher, [c["teacher_stage"]], "kd.afdcd.teacher_stage")
        (cs,) = stage_channels(student, [c["student_stage"]], "kd.afdcd.student_stage")
        return cls(cs, ct, **c)

    def generate(self, student_map: Tensor, size) -> Tensor:
        """P: the aligned, resized, randomly masked (training only) and projected student map."""
        x = bilinear_resize(self.align(student_map), size)
        if self.training and self.mask_ratio > 0:
            keep = torch.rand(x.shape[0], 1, *x.shape[-2:], device=x.device) >= self.mask_ratio
            x = x * keep
        return self.projector(x)

    def forward(self, student_out: Dict, teacher_out: Dict, target: Tensor) -> Dict[str, Tensor]:
        t_map = stage_map(teacher_out, self.teacher_stage).detach()
        pred = self.generate(stage_map(student_out, self.student_stage), t_map.shape[-2:])
        fd = mimic_loss(pred, t_map)
        ctr = contrast_loss(pred, t_map, self.groups, self.tau, self.pool_size, self.patch_size)
        ce = ce_loss(student_out["logits"], target)
        kd = kd_loss(student_out["logits"], teacher_out["logits"], self.kd_tau)
        loss = ce + self.lambda_kd * kd + self.lambda_fd * fd + self.lambda_ctr * ctr
        return {"loss": loss, "ce": ce, "kd": kd, "fd": fd, "ctr": ctr}


def _divisors(n: int) -> str:
    return ", ".join(str(d) for d in range(2, min(n, 64) + 1) if n % d == 0) or "none"
