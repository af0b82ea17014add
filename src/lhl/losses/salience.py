"""Salience (edge) masks of a per-pixel loss map: the pixel selection of HAD's SG term.

The map is detached, its Sobel magnitude min-max normalised per image, and a threshold keeps
the high (or low, or both) tails. Zero padding reproduces the release; replicate padding (kornia)
stops the image border from looking like an edge.
"""
from __future__ import annotations

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
