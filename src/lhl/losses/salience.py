"""Salience (edge) masks of a per-pixel loss map: the pixel selection of HAD's SG term.

The map is detached, its Sobel magnitude min-max normalised per image, and a threshold keeps
the high (or low, or both) tails. Zero padding reproduces the release; replicate padding (kornia)
stops the image border from looking like an edge.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from kornia.filters import spatial_gradient
from torch import Tensor

#: the release's Sobel kernels (x, then y), applied by cross-correlation as F.conv2d does
_RELEASE_SOBEL = (
    ((-1.0, 0.0, 1.0), (-2.0, 0.0, 2.0), (-1.0, 0.0, 1.0)),
    ((-1.0, -2.0, -1.0), (0.0, 0.0, 0.0), (1.0, 2.0, 1.0)),
)


def sobel_magnitude(image: Tensor, replicate_padding: bool) -> Tensor:
    """Sobel gradient magnitude of a [B, H, W] map, same shape, computed without gradient.

    `replicate_padding=False` is the release's plain conv2d with zero padding; True uses kornia.
    """
    x = image.detach().unsqueeze(1)
    if replicate_padding:
        grad = spatial_gradient(x, mode="sobel", order=1, normalized=False)[:, 0]
    else:
        kernel = torch.tensor(_RELEASE_SOBEL, dtype=x.dtype, device=x.device).unsqueeze(1)
        grad = F.conv2d(x, kernel, padding=1)
    return grad.pow(2).sum(dim=1).sqrt()


def edge_mask(
    loss_map: Tensor, scalar_val: float, sel_max: int, replicate_padding: bool = False
) -> Tensor:
    """Boolean [B, H, W] mask of the pixels whose normalised edge strength passes `scalar_val`.

    sel_max 1 keeps values above scalar_val, 0 below, 2 both tails (<= scalar_val or
    >= 1 - scalar_val). A flat image (max == min) normalises to NaN and keeps nothing, as released.
    """
    mag = sobel_magnitude(loss_map, replicate_padding)
    flat = mag.flatten(1)
    lo = flat.amin(dim=1, keepdim=True)
    hi = flat.amax(dim=1, keepdim=True)
    norm = ((flat - lo) / (hi - lo)).view_as(mag)
    if sel_max == 1:
        return norm > scalar_val
    if sel_max == 0:
        return norm < scalar_val
    if sel_max == 2:
        return (norm <= scalar_val) | (norm >= 1.0 - scalar_val)
    raise ValueError(f"sel_max must be 0 (below), 1 (above) or 2 (both tails), got {sel_max!r}")


#: SG's pixel selections: the release's threshold, a fixed top share of pixels, a soft weight
SELECTIONS = ("threshold", "top_fraction", "soft")


def normalised_magnitude(mag: Tensor) -> Tensor:
    """Min-max normalisation of a [B, H, W] magnitude per image to [0, 1]; a flat image is all zeros."""
    flat = mag.flatten(1)
    lo = flat.amin(dim=1, keepdim=True)
    span = flat.amax(dim=1, keepdim=True) - lo
    return ((flat - lo) / torch.where(span > 0, span, torch.ones_like(span))).view_as(mag)


def top_fraction_mask(mag: Tensor, fraction: float, valid: Tensor | None = None) -> Tensor:
    """Boolean [B, H, W]: per image the ceil(fraction x pixels) pixels of highest magnitude (at
    least one; ties broken by `torch.topk`), among the `valid` ones when given."""
    b = mag.shape[0]
    flat = mag.flatten(1)
    if valid is not None:
        flat = flat.masked_fill(~valid.flatten(1), float("-inf"))
    k = max(1, min(flat.shape[1], math.ceil(fraction * flat.shape[1] - 1e-9)))
    keep = torch.zeros_like(flat, dtype=torch.bool)
    keep.scatter_(1, flat.topk(k, dim=1).indices, True)
    if valid is not None:
        keep &= valid.flatten(1)
    return keep.view(b, *mag.shape[1:])


def select_pixels(loss_map: Tensor, how: str, fraction: float, replicate_padding: bool,
                  valid: Tensor | None = None) -> Tensor:
    """SG's pixels other than the release's threshold: `top_fraction` (a boolean mask) or `soft`
    (the min-max normalised Sobel magnitude of the detached loss map as a float weight)."""
    mag = sobel_magnitude(loss_map, replicate_padding)
    if how == "top_fraction":
        return top_fraction_mask(mag, fraction, valid)
    if how == "soft":
        return normalised_magnitude(mag)
    raise ValueError(f"SG selection must be one of {SELECTIONS}, got {how!r}")
