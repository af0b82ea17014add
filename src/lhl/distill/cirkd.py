"""CIRKD: cross-image relational knowledge distillation (Yang et al., CVPR 2022).

Relations between pixels of different images of the batch, on the maps the classifiers read
(L2-normalised per pixel, both resized bilinearly to input / `align_stride`):
- pixel-to-pixel: for every ordered pair of images (i, j), the similarities of each pixel of i to
  all pixels of j, softmax at temperature `tau` over j's pixels; KL from the teacher's
  distribution to the student's, mean over the pixels of i, then over the B x B pairs. Each
  network's similarities are in its own feature space (any channels).
- pixel-to-region: region embeddings are the teacher's class means per image (normalised), over
  the whole batch; every labelled pixel's similarities to them (teacher: its own embedding;
  student: its embedding through a trainable projection head into the teacher's width, 1x1 conv,
  BN, ReLU, 1x1 conv as the reference), softmax at `tau`, KL at `kd_tau` (times kd_tau^2), mean
  over labelled pixels.
Plus CE and pixel-wise logit KD. In-batch only: the reference also keeps memory queues of teacher
pixel and region embeddings from past batches (20000 / 2000 per class) and contrasts against
samples of them (its "memory pixel" term, weight 0.1, is omitted here; its region term is computed
with the regions of the current batch). The queues add only negatives from past batches; the
relations across images of the batch are the method's core and are kept.

Defaults: github.com/winycg/CIRKD at 2d8ad0f, train_cirkd.py (lambda_kd 1, kd_temperature 1,
lambda_minibatch_pixel 1, contrast_temperature 0.1, lambda_memory_region 0.1,
contrast_kd_temperature 1) and losses/cirkd_mini_batch.py, losses/cirkd_memory.py.
"""
from __future__ import annotations

from typing import Dict, Optional

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

from lhl.core.registry import DISTILLERS
from lhl.distill.baselines import Distiller, ce_loss, kd_loss
from lhl.distill.segmenters import bilinear_resize
from lhl.distill.stages import Stage, aligned_target, common_size, stage_channels, stage_map


def pixel_pair_loss(student: Tensor, teacher: Tensor, tau: float = 0.1) -> Tensor:
    """Cross-image pixel-to-pixel KD on normalised maps [B, C, h, w] (channels may differ)."""
    s, t = student.flatten(2), teacher.detach().flatten(2)  # [B, C, N]
    b = s.shape[0]
    total = s.new_zeros(())
    for i in range(b):  # one image against all: [B, N, N] at a time
        s_log = F.log_softmax(torch.einsum("cn,bcm->bnm", s[i], s) / tau, -1)
        t_log = F.log_softmax(torch.einsum("cn,bcm->bnm", t[i], t) / tau, -1)
        total = total + (t_log.exp() * (t_log - s_log)).sum(-1).mean()
    return total / b


def region_embeddings(teacher: Tensor, labels: Tensor) -> Tensor:
    """[R, C]: per image and labelled class, the normalised mean of the (normalised) teacher pixels."""
    b, c = teacher.shape[:2]
    flat, lab = teacher.flatten(2), labels.flatten(1)
    regions = []
    for i in range(b):
        for k in torch.unique(lab[i][lab[i] >= 0]).tolist():
            regions.append(flat[i][:, lab[i] == k].mean(1))
    if not regions:
        return teacher.new_zeros((0, c))
    return F.normalize(torch.stack(regions), dim=1)


def pixel_region_loss(student: Tensor, teacher: Tensor, labels: Tensor, tau: float = 0.1,
                      kd_tau: float = 1.0) -> Tensor:
    """Pixel-to-region KD: normalised maps [B, C, h, w] of equal width, labels [B, h, w] (-1 ignored)."""
    teacher = teacher.detach()
    regions = region_embeddings(teacher, labels)
    keep = labels.flatten() >= 0
    if not bool(keep.any()):
        return student.sum() * 0
    s = student.permute(0, 2, 3, 1).reshape(-1, student.shape[1])[keep]
    t = teacher.permute(0, 2, 3, 1).reshape(-1, teacher.shape[1])[keep]
    s_log = F.log_softmax(s @ regions.T / tau / kd_tau, 1)
    t_log = F.log_softmax(t @ regions.T / tau / kd_tau, 1)
    return (t_log.exp() * (t_log - s_log)).sum(1).mean() * kd_tau**2


def region_head(cin: int, cout: int) -> nn.Sequential:
    """The reference's student projection head: 1x1 conv, BN, ReLU, 1x1 conv (no biases)."""
    return nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
                         nn.Conv2d(cout, cout, 1, bias=False))


@DISTILLERS.register("cirkd")
class CrossImageKD(Distiller):
    """CE + lambda_kd * logit KD + lambda_pixel * pixel-to-pixel + lambda_region * pixel-to-region."""

    order, label = 4, "CIRKD"

    def __init__(self, num_classes: int, student_channels: int, teacher_channels: int, lambda_kd: float = 1.0,
                 kd_tau: float = 1.0, lambda_pixel: float = 1.0, lambda_region: float = 0.1,
                 tau: float = 0.1, region_kd_tau: float = 1.0, align_stride: int = 8,
                 teacher_stage: Stage = "decoder", student_stage: Stage = "decoder"):
        super().__init__()
        self.num_classes = int(num_classes)
        self.head = region_head(student_channels, teacher_channels)
        self.lambda_kd, self.kd_tau = float(lambda_kd), float(kd_tau)
        self.lambda_pixel, self.lambda_region = float(lambda_pixel), float(lambda_region)
        self.tau, self.region_kd_tau, self.align_stride = float(tau), float(region_kd_tau), int(align_stride)
        self.teacher_stage, self.student_stage = teacher_stage, student_stage

    @classmethod
    def from_config(cls, cfg: DictConfig, teacher: Optional[nn.Module], student: nn.Module) -> "CrossImageKD":
        c = OmegaConf.to_container(cfg.kd.cirkd, resolve=True)
        (ct,) = stage_channels(teacher, [c["teacher_stage"]], "kd.cirkd.teacher_stage")
        (cs,) = stage_channels(student, [c["student_stage"]], "kd.cirkd.student_stage")
        return cls(student.num_classes, cs, ct, **c)

    def forward(self, student_out: Dict, teacher_out: Dict, target: Tensor) -> Dict[str, Tensor]:
        size = common_size(target, self.align_stride)
        s_map = bilinear_resize(stage_map(student_out, self.student_stage), size)
        t_map = F.normalize(bilinear_resize(stage_map(teacher_out, self.teacher_stage).detach(), size), dim=1)
        pixel = pixel_pair_loss(F.normalize(s_map, dim=1), t_map, self.tau)
        _, valid, small = aligned_target(target, self.num_classes, size)
        labels = torch.where(valid, small, torch.full_like(small, -1))
        region = pixel_region_loss(F.normalize(self.head(s_map), dim=1), t_map, labels, self.tau, self.region_kd_tau)
        ce = ce_loss(student_out["logits"], target)
        kd = kd_loss(student_out["logits"], teacher_out["logits"], self.kd_tau)
        loss = ce + self.lambda_kd * kd + self.lambda_pixel * pixel + self.lambda_region * region
        return {"loss": loss, "ce": ce, "kd": kd, "pixel": pixel, "region": region}
