"""HAD's settings and building blocks: the mend switches, and the DB / SG reductions of a loss map.

Pure functions of (loss map, labels, masks, HADConfig). With every mend off they reduce exactly as
the release's `weight_fit` does (Deexaa/HAD @ 67bb089), quirks included; each mend switches one
quirk to the evident intent. All of it is vectorised (class-wise geometric means by scatter_add,
no loop over classes) and keeps every count on the device.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional, Tuple

import torch
from torch import Tensor

from lhl.losses.salience import edge_mask, select_pixels

#: the switches, in the order the docs describe them; False everywhere = the release
MENDS = (
    "exclude_absent_classes",
    "per_image_depth_mask",
    "masked_normal_numerator",
    "full_cosine",
    "mean_of_groups",
    "replicate_padding",
    "group_by_pseudo_label",
    "class_weighted_mean",
    "sg_mean_over_kept",
    "count_valid_pixels",
)


@dataclass(frozen=True)
class HADConfig:
    """Resolved HAD loss settings: the release's hyper-parameters plus one bool per mend."""

    scalar_val: float = 0.9
    num_interval: float = 0.5
    sel_max: int = 1
    exclude_absent_classes: bool = False
    per_image_depth_mask: bool = False
    masked_normal_numerator: bool = False
    full_cosine: bool = False
    mean_of_groups: bool = False
    replicate_padding: bool = False
    group_by_pseudo_label: bool = False
    class_weighted_mean: bool = False
    sg_mean_over_kept: bool = False
    count_valid_pixels: bool = False
    db: bool = True  # False: the plain pseudo-label loss in DB's place (the paper's "w/o DB")
    sg: bool = True  # False: the plain pseudo-label loss in SG's place (the paper's "w/o SG")
    # the hypotheses' switches (their defaults are the release's)
    group_mean: str = "geometric"  # a semantic class's mean: geometric (release) | arithmetic
    db_weighting: str = "softmax_neg"  # semantic DB's class weights: softmax(-G) | uniform | softmax(+G)
    sg_select: str = "threshold"  # SG's pixels: release threshold | top_fraction | soft (Sobel weight)
    sg_fraction: float = 0.1  # sg_select=top_fraction: the share of each image's pixels kept

    @classmethod
    def for_mode(cls, mode: str, **values) -> "HADConfig":
        """`faithful` = every mend off, `fixed` = every mend on; a value that is not None overrides."""
        if mode not in ("faithful", "fixed"):
            raise ValueError(f"HAD mode must be 'faithful' or 'fixed', got {mode!r}")
        mends = {name: mode == "fixed" for name in MENDS}
        mends.update({k: v for k, v in values.items() if v is not None})
        return cls(**mends)

    @property
    def uses_db(self) -> bool:
        """The release's convention: num_interval == 1 swaps DB for the plain pseudo-label loss
        (as does `db=False`)."""
        return self.db and self.num_interval != 1

    def replace(self, **values) -> "HADConfig":
        """A copy with some settings changed (tests and ablations flip one mend at a time)."""
        return dataclasses.replace(self, **values)


def salience_keep(loss_map: Tensor, cfg: HADConfig) -> Tensor:
    """SG's pixel selection on the (detached) loss map under `cfg`: the release's edge mask, the top
    `sg_fraction` of each image's pixels by Sobel magnitude, or (`soft`) the normalised Sobel
    magnitude as a float weight per pixel."""
    if cfg.sg_select == "threshold":
        return edge_mask(loss_map, cfg.scalar_val, cfg.sel_max, cfg.replicate_padding)
    return select_pixels(loss_map, cfg.sg_select, cfg.sg_fraction, cfg.replicate_padding)


#: the signs of the DB class-weight logits: softmax(sign * G)
DB_WEIGHTINGS = {"softmax_neg": -1.0, "uniform": 0.0, "softmax_pos": 1.0}


# --- distribution balance -----------------------------------------------------------------------
def class_geometric_means(
    loss_map: Tensor, label: Tensor, valid: Tensor, num_classes: int
) -> Tuple[Tensor, Tensor]:
    """Per class c: geometric mean G_c of the positive losses of its pixels (0 if none) and
    whether c occurs in the label. Zero losses are left out, as the release's geo_mean does."""
    idx = torch.where(valid, label, torch.zeros_like(label)).flatten()
    pos = (valid & (loss_map > 0)).flatten()
    logs = torch.where(pos, loss_map.flatten(), torch.ones_like(loss_map.flatten())).log()
    zeros = loss_map.new_zeros(num_classes)
    log_sum = zeros.scatter_add(0, idx, logs)
    n_pos = zeros.scatter_add(0, idx, pos.to(loss_map.dtype))
    present = zeros.scatter_add(0, idx, valid.flatten().to(loss_map.dtype)) > 0
    means = torch.where(n_pos > 0, (log_sum / n_pos.clamp_min(1)).exp(), zeros)
    return means, present


def class_arithmetic_means(
    loss_map: Tensor, label: Tensor, valid: Tensor, num_classes: int
) -> Tuple[Tensor, Tensor]:
    """Per class c: the arithmetic mean of its valid pixels' losses (0 if none) and whether c occurs."""
    idx = torch.where(valid, label, torch.zeros_like(label)).flatten()
    w = valid.flatten().to(loss_map.dtype)
    zeros = loss_map.new_zeros(num_classes)
    sums = zeros.scatter_add(0, idx, loss_map.flatten() * w)
    counts = zeros.scatter_add(0, idx, w)
    return sums / counts.clamp_min(1), counts > 0


def class_balanced_loss(
    loss_map: Tensor, label: Tensor, valid: Tensor, num_classes: int, cfg: HADConfig
) -> Tensor:
    """Semantic DB: class geometric means weighted by the detached softmax(-G).

    Release: softmax over all classes (absent ones at G = 0 keep weight) and the mean over
    classes of w_c G_c. Mends: absent classes out of the softmax (`exclude_absent_classes`),
    and the weighted mean sum_c w_c G_c instead of dividing it by the class count
    (`class_weighted_mean`). Switches: `group_mean` (arithmetic class means), `db_weighting`
    (softmax(+G) or uniform weights, under the same masking)."""
    if cfg.group_mean == "geometric":
        means, present = class_geometric_means(loss_map, label, valid, num_classes)
    else:
        means, present = class_arithmetic_means(loss_map, label, valid, num_classes)
    if cfg.db_weighting == "softmax_neg":
        logits = -means
    else:
        logits = means * DB_WEIGHTINGS[cfg.db_weighting]
    if cfg.exclude_absent_classes:
        logits = logits.masked_fill(~present, float("-inf"))
    weights = torch.softmax(logits, dim=0).nan_to_num(0.0).detach()
    weighted = (weights * means).sum()
    if cfg.class_weighted_mean:
        return weighted
    if cfg.exclude_absent_classes:
        return weighted / present.sum().clamp_min(1)
    return weighted / num_classes


def group_balanced_loss(
    loss_map: Tensor,
    value: Tensor,
    bar: float,
    restrict: Optional[Tensor],
    empty_value: float,
    mean_of_groups: bool,
) -> Tensor:
    """Regression DB: mean loss of the pixels whose `value` is above `bar` and of those below.

    Release: the two group means are summed and an empty group counts as `empty_value`;
    `mean_of_groups` averages the non-empty groups instead."""
    groups = torch.stack((value > bar, value < bar))
    if restrict is not None:
        groups = groups & restrict
    groups = groups.flatten(1)
    n = groups.sum(dim=1)
    means = (loss_map.flatten().unsqueeze(0) * groups).sum(dim=1) / n.clamp_min(1)
    filled = n > 0
    if mean_of_groups:
        return (means * filled).sum() / filled.sum().clamp_min(1)
    return torch.where(filled, means, means.new_full((), empty_value)).sum()


# --- salience guidance, given the edge mask ------------------------------------------------------
def soft_sg(loss_map: Tensor, counted: Tensor, weight: Tensor) -> Tensor:
    """SG with `sg_select=soft`: the weighted mean of the loss map over the counted pixels, each
    weighted by its normalised Sobel magnitude (0 when every weight is 0)."""
    w = weight * counted
    den = w.sum()
    return torch.where(den > 0, (loss_map * w).sum() / den.clamp_min(1e-12), den)


def semantic_sg(nll: Tensor, valid: Tensor, keep: Tensor, mean_over_kept: bool) -> Tensor:
    """Semantic SG. Release: kept-pixel NLL summed over ALL pixels' count (scaled by the keep
    fraction); `sg_mean_over_kept`: the mean over the kept valid pixels."""
    if mean_over_kept:
        kept = keep & valid
        return (nll * kept).sum() / kept.sum().clamp_min(1)
    return (nll * keep).mean()


def regression_sg(err: Tensor, counted: Tensor, keep: Tensor, per_image: bool) -> Tensor:
    """Regression SG: sum of the kept errors over the count of kept `counted` pixels.

    Release (`per_image=False`): [B,1,H,W] * [B,H,W] broadcasts to [B,B,H,W], every image's error
    under every image's mask; computed here as per-pixel sums over the two batch axes, not
    materialised."""
    if per_image:
        return (err * keep).sum() / (counted & keep).sum().clamp_min(1)
    kept_per_pixel = keep.sum(dim=0)
    num = (err.sum(dim=0) * kept_per_pixel).sum()
    return num / (counted.sum(dim=0) * kept_per_pixel).sum().clamp_min(1)


def normal_sg(prod: Tensor, valid: Tensor, keep: Tensor, cfg: HADConfig) -> Tensor:
    """Normal SG = 1 - (summed cosine) / (kept count), 1 when nothing is kept.

    Release: the numerator sums every pixel (`masked_normal_numerator` sums the kept ones), the
    count is of non-zero channel entries, about 3 per pixel (`full_cosine`: one per pixel;
    `count_valid_pixels`: kept valid pixels, times 3 unless `full_cosine`)."""
    cos = prod.sum(dim=1)
    num = (cos * keep).sum() if cfg.masked_normal_numerator else cos.sum()
    if cfg.count_valid_pixels:
        den = (keep & valid).sum() * (1 if cfg.full_cosine else prod.shape[1])
    elif cfg.full_cosine:
        den = ((cos * keep) != 0).sum()
    else:
        den = ((prod * keep.unsqueeze(1)) != 0).sum()
    return torch.where(den > 0, 1.0 - num / den.clamp_min(1), torch.ones_like(num))
