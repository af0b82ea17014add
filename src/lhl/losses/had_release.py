"""The release's HAD inputs, kept as explicit adapters for `mode: faithful` (every mend off).

Where the release (Deexaa/HAD @ 67bb089, `weight_fit`) decides validity or builds a loss map
differently from the task types, the difference lives here, named, and `had_terms` uses it only
while the mend that corrects it is off. Semantic and depth need none: the release's class range
and its 0-as-invalid depth mask are those task types' own rules.
"""
from __future__ import annotations

from torch import Tensor

from lhl.tasks.normal import release_normal_valid

__all__ = ["release_error_count", "release_normal_loss_map", "release_normal_valid"]


def release_error_count(err: Tensor) -> Tensor:
    """The pixels the release's regression denominators count: those with a non-zero error, so an
    exact hit counts as invalid (mend: `count_valid_pixels`, which counts the valid pixels)."""
    return err != 0


def release_normal_loss_map(prod: Tensor, full_cosine: bool) -> Tensor:
    """The release's normal loss map from the masked per-channel product [B, 3, H, W]: 1 - cos/3
    (1 - cos with `full_cosine`), and 1 on invalid pixels, which its means then include."""
    cos = prod.sum(dim=1)
    return 1.0 - (cos if full_cosine else cos / prod.shape[1])
