"""SKD: structured knowledge distillation (Liu et al., CVPR 2019; TPAMI 2020).

Pixel-wise distillation (KL from the teacher's class distribution to the student's at every
pixel) plus pair-wise distillation: after max-pooling a feature map into coarse nodes, the
cosine-similarity matrix between all node pairs of one image, a_ij = f_i . f_j / (|f_i| |f_j|),
is matched by squared error, averaged over the node pairs and the images. Each network's
similarities are computed in its own feature space, so the teacher and the student may have any
channels; the teacher map is resized bilinearly to the student's size first (the two
architectures need not share a stride). The holistic term (a Wasserstein GAN discriminator on the
segmentation maps) is omitted: it needs a second network with its own optimiser, outside a
`Distiller`'s single loss.

Defaults are the authors' Cityscapes run (github.com/irfanICMLL/structure_knowledge_distillation,
run_train_val.sh at ce208e1: lambda_pi 10, lambda_pa 0.5, pool_scale 0.5, i.e. the map pooled into
2 x 2 nodes; utils/criterion.py: CriterionPixelWise, CriterionPairWiseforWholeFeatAfterPool).
Their pixel-wise term sums over the images of a GPU's batch; here it is the mean over pixels.
CIRKD's re-implementation (github.com/winycg/CIRKD, losses/skd.py, scripts/train_kd/train_skd.sh:
lambda_kd 1, lambda_skd 10, 2 x 2 pooling windows) is the other published setting:
`kd.skd.lambda_pi=1 kd.skd.lambda_pa=10 kd.skd.pool_scale=0` (0 = 2 x 2 windows).
"""
from __future__ import annotations

from typing import Dict, Optional

import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

from lhl.core.registry import DISTILLERS
from lhl.distill.baselines import Distiller, ce_loss, kd_loss
from lhl.distill.segmenters import bilinear_resize
from lhl.distill.stages import Stage, stage_channels, stage_map


def pool_nodes(feat: Tensor, scale: float) -> Tensor:
    """Max-pool `feat` into nodes: windows of `scale` x the map size (SKD), or 2 x 2 windows
    when `scale` is 0 (CIRKD's re-implementation); ceil mode, so every pixel is in a node."""
    h, w = feat.shape[-2:]
    kernel = (2, 2) if scale <= 0 else (max(1, int(h * scale)), max(1, int(w * scale)))
    return F.max_pool2d(feat, kernel, kernel, ceil_mode=True)


def similarity(feat: Tensor) -> Tensor:
    """[B, N, N] cosine similarities between the N pixels of each image (SKD's 1e-8 in the norm)."""
    f = feat.flatten(2)
    f = f / (f.norm(dim=1, keepdim=True) + 1e-8)
    return f.transpose(1, 2) @ f


def pairwise_loss(student: Tensor, teacher: Tensor, scale: float = 0.5) -> Tensor:
    """Mean over images and node pairs of (a^S_ij - a^T_ij)^2; the teacher map is resized to the student's."""
    teacher = bilinear_resize(teacher.detach(), student.shape[-2:])
    diff = similarity(pool_nodes(student, scale)) - similarity(pool_nodes(teacher, scale))
    return diff.pow(2).mean()


@DISTILLERS.register("skd")
class StructuredKD(Distiller):
    """CE + lambda_pi * pixel-wise KD (tau) + lambda_pa * pair-wise similarity distillation."""

    order, label = 3, "SKD"

    def __init__(self, lambda_pi: float = 10.0, lambda_pa: float = 0.5, tau: float = 1.0,
                 pool_scale: float = 0.5, teacher_stage: Stage = "decoder", student_stage: Stage = "decoder"):
        super().__init__()
        if not 0 <= pool_scale <= 1:
            raise ValueError(f"kd.skd.pool_scale={pool_scale}: use a fraction of the map size in (0, 1], "
                             "or 0 for 2 x 2 pooling windows")
        self.lambda_pi, self.lambda_pa, self.tau = float(lambda_pi), float(lambda_pa), float(tau)
        self.pool_scale, self.teacher_stage, self.student_stage = float(pool_scale), teacher_stage, student_stage

    @classmethod
    def from_config(cls, cfg: DictConfig, teacher: Optional[nn.Module], student: nn.Module) -> "StructuredKD":
        c = OmegaConf.to_container(cfg.kd.skd, resolve=True)
        if teacher is not None:
            stage_channels(teacher, [c["teacher_stage"]], "kd.skd.teacher_stage")
        stage_channels(student, [c["student_stage"]], "kd.skd.student_stage")
        return cls(**c)

    def forward(self, student_out: Dict, teacher_out: Dict, target: Tensor) -> Dict[str, Tensor]:
        ce = ce_loss(student_out["logits"], target)
        pi = kd_loss(student_out["logits"], teacher_out["logits"], self.tau)
        pa = pairwise_loss(stage_map(student_out, self.student_stage), stage_map(teacher_out, self.teacher_stage),
                           self.pool_scale)
        return {"loss": ce + self.lambda_pi * pi + self.lambda_pa * pa, "ce": ce, "pi": pi, "pa": pa}
