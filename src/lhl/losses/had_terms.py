"""HAD's per-old-task distillation term: (DB + SG) / 2 against the teacher's pseudo-label.

One function per task kind, looked up in `HAD_TERMS`; a kind without one is refused, never given
another kind's terms. In the mended settings every term takes its loss map and valid pixels from
the task type (`TaskSpec.pixel_loss` / `valid_mask`); while the mend that corrects one of the
release's quirks is off, the release's own input (`had_release`) is used instead, so `faithful`
mode (every mend off) computes exactly what the release's `weight_fit` computes.
"""
from __future__ import annotations

from typing import Callable, Dict, Optional, Tuple

from torch import Tensor

from lhl.losses.had_parts import (
    MENDS,
    HADConfig,
    class_balanced_loss,
    group_balanced_loss,
    normal_sg,
    regression_sg,
    salience_keep,
    semantic_sg,
    soft_sg,
)
from lhl.losses.had_release import release_error_count, release_normal_loss_map, release_normal_valid
from lhl.tasks.base import TaskSpec

__all__ = ["HAD_TERMS", "MENDS", "HADConfig", "had_term", "normal_had", "regression_had", "semantic_had"]

#: (term, DB, SG, keep mask) of one old task
Parts = Tuple[Tensor, Tensor, Tensor, Tensor]
#: where a term leaves its per-pixel loss map and valid pixels (`maps["loss_map"]`, `maps["valid"]`)
#: when asked, for the loss-term diagnostics; None (the default): nothing is kept
Maps = Optional[Dict[str, Tensor]]


def _keep_map(maps: Maps, loss_map: Tensor, valid: Tensor) -> None:
    if maps is not None:
        maps["loss_map"], maps["valid"] = loss_map, valid


def _sg_term(cfg: HADConfig, plain: Tensor, loss_map: Tensor, counted: Tensor, keep: Tensor, selected) -> Tensor:
    """SG's term: the plain mean without SG, the Sobel-weighted mean (`sg_select=soft`), else the
    kind's own mean over the kept pixels (`selected()`)."""
    if not cfg.sg:
        return plain
    if cfg.sg_select == "soft":
        return soft_sg(loss_map, counted, keep)
    return selected()


def semantic_had(task: TaskSpec, log_probs: Tensor, label: Tensor, cfg: HADConfig, maps: Maps = None) -> Parts:
    """Log-probabilities [B, C, H, W] against a label [B, H, W]: the task's masked NLL (the release
    ignores the same pixels), class-balanced DB, SG on the NLL map."""
    nll, valid = task.pixel_loss(log_probs, label)
    _keep_map(maps, nll, valid)
    keep = salience_keep(nll, cfg)
    plain = nll.sum() / valid.sum().clamp_min(1)
    sg = _sg_term(cfg, plain, nll, valid, keep, lambda: semantic_sg(nll, valid, keep, cfg.sg_mean_over_kept))
    if cfg.uses_db:
        db = class_balanced_loss(nll, label, valid, log_probs.shape[1], cfg)
    else:
        db = plain
    return (db + sg) / 2, db, sg, keep


def regression_had(task: TaskSpec, pred: Tensor, target: Tensor, cfg: HADConfig, maps: Maps = None) -> Parts:
    """An L1 map [B, C, H, W] (depth, scalar maps): the task's error map and valid pixels.

    Release quirks: the SG product broadcasts [B,1,H,W] * [B,H,W] into [B,B,H,W] (mend
    `per_image_depth_mask`), denominators count non-zero errors (`count_valid_pixels`), and the
    groups split by the student's value (`group_by_pseudo_label`). The release had no scalar task:
    scalar maps use these formulas with their own validity (NaN invalid, 0 a value) in every mode."""
    err, valid = task.pixel_loss(pred, target)
    _keep_map(maps, err, valid)
    keep = salience_keep(err, cfg)
    counted = valid if cfg.count_valid_pixels else release_error_count(err)
    plain = err.sum() / counted.sum().clamp_min(1)
    sg = _sg_term(cfg, plain, err, counted, keep, lambda: regression_sg(err, counted, keep, cfg.per_image_depth_mask))
    if cfg.uses_db:
        source = target if cfg.group_by_pseudo_label else pred
        restrict = valid if cfg.count_valid_pixels else None
        db = group_balanced_loss(err, source.mean(dim=1), cfg.num_interval, restrict, 0.0, cfg.mean_of_groups)
    else:
        db = plain
    return (db + sg) / 2, db, sg, keep


def _normal_inputs(task: TaskSpec, pred: Tensor, target: Tensor, cfg: HADConfig) -> Tuple[Tensor, Tensor, Tensor]:
    """(loss map, valid, masked per-channel product). Valid pixels: the task's rule with
    `count_valid_pixels`, else the release's signed-sum mask; loss map: the task's with that and
    `full_cosine`, else the release's (1 - cos/3 or 1 - cos, invalid pixels at 1)."""
    valid = task.valid_mask(target) if cfg.count_valid_pixels else release_normal_valid(target)
    prod = pred * target * valid.unsqueeze(1)
    if cfg.count_valid_pixels and cfg.full_cosine:
        loss_map, _ = task.pixel_loss(pred, target)
    else:
        loss_map = release_normal_loss_map(prod, cfg.full_cosine)
    return loss_map, valid, prod


def normal_had(task: TaskSpec, pred: Tensor, target: Tensor, cfg: HADConfig, maps: Maps = None) -> Parts:
    """Unit normals [B, 3, H, W] against the teacher's normals.

    Release quirks: the per-pixel loss is 1 - cos/3 (`full_cosine`), the SG numerator sums the
    cosine over all pixels, not the kept ones (`masked_normal_numerator`), the SG denominator counts
    non-zero channel entries, invalid pixels count as loss 1 and validity is the signed-sum mask
    (`count_valid_pixels`)."""
    loss_map, valid, prod = _normal_inputs(task, pred, target, cfg)
    _keep_map(maps, loss_map, valid)
    keep = salience_keep(loss_map, cfg)
    summed = (loss_map * valid).sum() if cfg.count_valid_pixels else loss_map.sum()
    plain = summed / valid.sum().clamp_min(1)
    sg = _sg_term(cfg, plain, loss_map, valid, keep, lambda: normal_sg(prod, valid, keep, cfg))
    restrict = valid if cfg.count_valid_pixels else None
    if cfg.uses_db:
        source = target if cfg.group_by_pseudo_label else pred
        db = group_balanced_loss(loss_map, source.mean(dim=1), cfg.num_interval, restrict, 1.0, cfg.mean_of_groups)
    else:
        db = plain
    return (db + sg) / 2, db, sg, keep


#: task kind -> its HAD terms; a kind not listed has no HAD term
HAD_TERMS: Dict[str, Callable[..., Parts]] = {
    "semantic": semantic_had,
    "depth": regression_had,
    "scalar": regression_had,
    "normal": normal_had,
}


def had_term(
    task: TaskSpec, student_pred: Tensor, pseudo_label: Tensor, cfg: HADConfig, maps: Maps = None
) -> Tuple[Tensor, Dict[str, Tensor]]:
    """One old task's HAD term (before the factor `new`) and its detached parts {db, sg, edge_keep}.

    `student_pred` is the activated prediction (semantic log-probabilities, raw depth, unit
    normals); `pseudo_label` the teacher's label in the task's label format; `maps`, when given,
    receives the term's per-pixel loss map and valid pixels (the diagnostics' hook)."""
    fn = HAD_TERMS.get(task.kind)
    if fn is None:
        raise ValueError(
            f"HAD has no terms for task '{task.name}' of kind '{task.kind}'; supported kinds: "
            f"{', '.join(sorted(HAD_TERMS))} (add the kind to lhl.losses.had_terms.HAD_TERMS)"
        )
    term, db, sg, keep = fn(task, student_pred, pseudo_label, cfg, maps)
    parts = {"db": db.detach(), "sg": sg.detach(), "edge_keep": keep.float().mean()}
    return term, parts
