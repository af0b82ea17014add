"""HAD as the paper states it (`mode: paper`), with the paper's ablation switches.

For one old task, against the teacher's activated output:

* pixel loss L_dis: semantic = NLL of the student's log-probabilities at the teacher's argmax;
  depth / scalar = |student - teacher| (summed over channels, as the scalar task's L1);
  normal = 1 - cos(student, teacher). Every pixel of a teacher prediction is valid (scalar: the
  non-NaN ones).
* DB, per image: groups = the classes of the teacher's argmax (semantic), or (regression, normals)
  the teacher's channel-mean map min-max normalised per image to [0, 1] (a flat map is all zeros)
  split into `> num_interval` and `<= num_interval` (`bins=2`), or into `bins` equal-width bins;
  inside a group the geometric mean exp(mean(log(max(L, 1e-6)))) (`group_mean=arithmetic`: the
  mean); L_db = mean over the image's non-empty groups (`db_weighting=softmax_neg` / `softmax_pos`:
  weighted by the detached softmax(-G) / softmax(+G) over them); then the mean over images.
* SG, per image: Sobel (3x3, replicate padding) of the detached loss map (`salience_source=
  prediction`: of the teacher's label map, semantic argmax as numbers, else its channel mean),
  magnitude, min-max normalised per image (flat: zeros); kept = normalised > scalar_val
  (`sg_select=top_fraction`: the `sg_fraction` of valid pixels of highest magnitude; `soft`: the
  normalised magnitude as a weight); L_sg = mean of L over the kept pixels (0 when none; `soft`:
  the weighted mean); then the mean over images.
* L_had = L_db + L_sg; `db=False` / `sg=False` put the plain mean of L in that term's place.

Vectorised (one scatter_add over (image, group) pairs, no loop over images or classes) and with
no host round trip, so it runs on the meta device. The switches' values are checked where a user
sets them (`lhl.methods.had.options`); `PaperConfig` only carries them.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from lhl.losses.salience import select_pixels, sobel_magnitude
from lhl.tasks.scalar import scalar_valid

__all__ = ["PaperConfig", "paper_had", "paper_pixel_loss", "GROUP_MEANS", "SALIENCE_SOURCES"]

GROUP_MEANS = ("geometric", "arithmetic")
SALIENCE_SOURCES = ("loss", "prediction")
#: the floor of a pixel loss inside the geometric mean's log
LOG_FLOOR = 1e-6

#: (term, DB, SG, keep mask)
Parts = Tuple[Tensor, Tensor, Tensor, Tensor]


@dataclass(frozen=True)
class PaperConfig:
    """The paper's HAD settings and ablation switches."""

    scalar_val: float = 0.9  # k, the salience threshold
    num_interval: float = 0.5  # δ, the split of the normalised value (bins=2)
    db: bool = True
    sg: bool = True
    group_mean: str = "geometric"
    bins: int = 2
    salience_source: str = "loss"
    db_weighting: str = "uniform"  # the groups' weights: uniform (the paper) | softmax_neg | softmax_pos
    sg_select: str = "threshold"  # SG's pixels: the paper's threshold | top_fraction | soft
    sg_fraction: float = 0.1  # sg_select=top_fraction: the share of each image's valid pixels kept

    def replace(self, **values) -> "PaperConfig":
        return dataclasses.replace(self, **values)


def paper_pixel_loss(kind: str, student: Tensor, teacher: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """(L_dis [B, H, W], valid [B, H, W], the teacher's label map [B, H, W] as numbers)."""
    teacher = teacher.detach()
    if kind == "semantic":
        # the teacher's log-probabilities, or already their argmax (the task's pseudo-label)
        label = teacher.long() if teacher.dim() == student.dim() - 1 else teacher.argmax(dim=1)
        loss = -student.gather(1, label.unsqueeze(1)).squeeze(1)
        return loss, torch.ones_like(label, dtype=torch.bool), label.to(student.dtype)
    if kind in ("depth", "scalar"):
        valid = scalar_valid(teacher)
        safe = torch.where(torch.isnan(teacher), torch.zeros_like(teacher), teacher)
        return (student - safe).abs().sum(dim=1) * valid, valid, safe.mean(dim=1)
    if kind == "normal":
        loss = 1.0 - F.cosine_similarity(student, teacher, dim=1, eps=1e-8)
        return loss, torch.ones_like(loss, dtype=torch.bool), teacher.mean(dim=1)
    raise ValueError(f"HAD (mode paper) has no pixel loss for task kind {kind!r}; "
                     "supported: semantic, depth, scalar, normal")


def normalise_per_image(value: Tensor) -> Tensor:
    """Min-max normalisation of a [B, H, W] map per image to [0, 1]; a flat image is all zeros."""
    flat = value.flatten(1)
    lo = flat.amin(dim=1, keepdim=True)
    span = flat.amax(dim=1, keepdim=True) - lo
    return ((flat - lo) / torch.where(span > 0, span, torch.ones_like(span))).view_as(value)


def group_ids(kind: str, label_map: Tensor, num_classes: int, cfg: PaperConfig) -> Tuple[Tensor, int]:
    """(group id per pixel [B, H, W], groups per image): classes, or bins of the normalised value."""
    if kind == "semantic":
        return label_map.long(), num_classes
    norm = normalise_per_image(label_map)
    if cfg.bins == 2:
        return (norm > cfg.num_interval).long(), 2
    return (norm * cfg.bins).floor().long().clamp(0, cfg.bins - 1), cfg.bins


def balanced_loss(loss: Tensor, valid: Tensor, groups: Tensor, per_image: int, cfg: PaperConfig) -> Tensor:
    """DB: per image, the equal-weight mean of its non-empty groups' (geometric) means, then the
    mean over the images that have a valid pixel. One scatter_add over (image, group)."""
    b = loss.shape[0]
    idx = (groups + per_image * torch.arange(b, device=loss.device).view(b, 1, 1)).flatten()
    w = valid.flatten().to(loss.dtype)
    if cfg.group_mean == "geometric":
        vals = loss.clamp_min(LOG_FLOOR).log().flatten()
    else:
        vals = loss.flatten()
    zeros = loss.new_zeros(b * per_image)
    sums = zeros.scatter_add(0, idx, vals * w)
    counts = zeros.scatter_add(0, idx, w)
    means = sums / counts.clamp_min(1)
    if cfg.group_mean == "geometric":
        means = means.exp()
    present = (counts > 0).view(b, per_image).to(loss.dtype)
    n_groups = present.sum(dim=1)
    if cfg.db_weighting == "uniform":
        per_img = (means.view(b, per_image) * present).sum(dim=1) / n_groups.clamp_min(1)
    else:  # softmax(±G) over each image's non-empty groups, detached as the release's class weights
        sign = 1.0 if cfg.db_weighting == "softmax_pos" else -1.0
        logits = (sign * means.view(b, per_image)).masked_fill(present == 0, float("-inf"))
        weights = torch.softmax(logits, dim=1).nan_to_num(0.0).detach()
        per_img = (weights * means.view(b, per_image) * present).sum(dim=1)
    has = (n_groups > 0).to(loss.dtype)
    return (per_img * has).sum() / has.sum().clamp_min(1)


def salience_keep(loss: Tensor, label_map: Tensor, valid: Tensor, cfg: PaperConfig) -> Tensor:
    """SG's pixels: normalised Sobel magnitude (replicate padding) of the detached loss map or of
    the teacher's label map above `scalar_val`, among the valid pixels (`sg_select`: the top
    `sg_fraction` of them, or the normalised magnitude as a float weight)."""
    source = loss if cfg.salience_source == "loss" else label_map
    if cfg.sg_select != "threshold":
        picked = select_pixels(source, cfg.sg_select, cfg.sg_fraction, True, valid)
        return picked if picked.dtype == torch.bool else picked * valid
    mag = sobel_magnitude(source.detach(), replicate_padding=True)
    return (normalise_per_image(mag) > cfg.scalar_val) & valid


def salient_loss(loss: Tensor, keep: Tensor) -> Tensor:
    """SG: per image the mean loss over its kept pixels (0 when none), then the mean over images; a
    float `keep` (soft selection) weights the pixels: per image sum(w L) / sum(w)."""
    k = keep.to(loss.dtype).flatten(1)
    num, den = (loss.flatten(1) * k).sum(dim=1), k.sum(dim=1)
    if keep.dtype == torch.bool:
        per_img = num / den.clamp_min(1)
    else:
        per_img = torch.where(den > 0, num / den.clamp_min(1e-12), den)
    return per_img.mean()


def plain_mean(loss: Tensor, valid: Tensor) -> Tensor:
    """The plain mean of L over the batch's valid pixels (DB's / SG's place when switched off)."""
    return (loss * valid).sum() / valid.sum().clamp_min(1)


def paper_had(kind: str, student: Tensor, teacher: Tensor, cfg: PaperConfig,
              maps: Optional[Dict[str, Tensor]] = None) -> Parts:
    """L_had = L_db + L_sg of one old task (student and teacher: activated outputs); `maps`, when
    given, receives the per-pixel loss map and valid pixels (the diagnostics' hook)."""
    loss, valid, label_map = paper_pixel_loss(kind, student, teacher)
    if maps is not None:
        maps["loss_map"], maps["valid"] = loss, valid
    keep = salience_keep(loss, label_map, valid, cfg)
    plain = plain_mean(loss, valid) if not (cfg.db and cfg.sg) else None
    if cfg.db:
        groups, per_image = group_ids(kind, label_map, student.shape[1], cfg)
        db = balanced_loss(loss, valid, groups, per_image, cfg)
    else:
        db = plain
    sg = salient_loss(loss, keep) if cfg.sg else plain
    return db + sg, db, sg, keep
