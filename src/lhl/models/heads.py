"""Task heads: DeepLabV3 ASPP as released (256 channels, rates 12/24/36, dropout 0.5)."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def upsample_to(x: Tensor, size) -> Tensor:
    """A head's (or a projector's) output at the backbone's stride brought to `size` as released:
    bilinear, align_corners=True; unchanged when it already has that size."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=True)


def _conv_bn_relu(cin: int, cout: int, k: int = 1, dilation: int = 1) -> nn.Sequential:
    pad = 0 if k == 1 else dilation
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, padding=pad, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class ASPPPooling(nn.Module):
    """Image-level branch: global average pool, 1x1 conv, broadcast back."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.proj = _conv_bn_relu(cin, cout)

    def forward(self, x: Tensor) -> Tensor:
        y = self.proj(F.adaptive_avg_pool2d(x, 1))
        return y.expand(-1, -1, x.shape[-2], x.shape[-1])


class ASPPHead(nn.Module):
    """DeepLabV3 head (torchvision's layout): ASPP, 3x3 conv, 1x1 classifier to `out_channels`."""

    def __init__(
        self, in_channels: int, out_channels: int, width: int = 256,
        rates: Sequence[int] = (12, 24, 36), dropout: float = 0.5,
    ):
        super().__init__()
        branches = [_conv_bn_relu(in_channels, width)]
        branches += [_conv_bn_relu(in_channels, width, 3, r) for r in rates]
        branches.append(ASPPPooling(in_channels, width))
        self.branches = nn.ModuleList(branches)
        self.project = nn.Sequential(_conv_bn_relu(width * len(branches), width), nn.Dropout(dropout))
        self.refine = _conv_bn_relu(width, width, 3)
        self.classifier = nn.Conv2d(width, out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        y = torch.cat([b(x) for b in self.branches], dim=1)
        return self.classifier(self.refine(self.project(y)))
