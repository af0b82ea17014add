"""Semantic segmenters of both architecture families, built by name: `<decoder>_<timm encoder>`.

Encoders are `lhl.models.backbone.Encoder` (every timm stage as NCHW). Decoders: `deeplabv3`
(ASPP on the deepest map, CNNs at a dilated output stride), `segformer` (all-MLP decoder over
every stage), `upernet` (pyramid pooling + FPN fuse) and `fpn` (semantic FPN; the one for
single-scale ViTs). Any timm `features_only` encoder works, e.g.
`deeplabv3_resnet18`, `deeplabv3_mobilenetv2_100`, `segformer_pvt_v2_b0`,
`upernet_swin_tiny_patch4_window7_224`, `fpn_vit_tiny_patch16_224`.
`forward(x) -> {"logits": [B, C, H, W] at the input size, "features": [stage maps, NCHW],
"decoder": [B, width, h, w] the map the classifier reads}`.
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence

import timm
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lhl.config.upgrade import SEGMENTER_DECODERS
from lhl.models.backbone import Encoder
from lhl.models.heads import ASPPHead

DECODERS = SEGMENTER_DECODERS


def _cbr(cin: int, cout: int, k: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


def bilinear_resize(x: Tensor, size) -> Tensor:
    """Bilinear resize of an NCHW map to `size` (identity when already there)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class ASPPDecoder(nn.Module):
    """DeepLabV3: the project's ASPP head on the deepest stage."""

    def __init__(self, channels: Sequence[int], width: int, rates=(12, 24, 36), dropout: float = 0.1):
        super().__init__()
        self.aspp = ASPPHead(channels[-1], 1, width=width, rates=rates, dropout=dropout)
        self.aspp.classifier = nn.Identity()

    def forward(self, feats: List[Tensor]) -> Tensor:
        return self.aspp(feats[-1])


class MLPDecoder(nn.Module):
    """SegFormer's all-MLP decoder: per-stage linear to `width`, upsample to stage 0, fuse."""

    def __init__(self, channels: Sequence[int], width: int, dropout: float = 0.1):
        super().__init__()
        self.proj = nn.ModuleList(nn.Conv2d(c, width, 1) for c in channels)
        self.fuse = nn.Sequential(_cbr(width * len(channels), width), nn.Dropout2d(dropout))

    def forward(self, feats: List[Tensor]) -> Tensor:
        size = feats[0].shape[-2:]
        return self.fuse(torch.cat([bilinear_resize(p(f), size) for p, f in zip(self.proj, feats)], 1))


class PyramidPooling(nn.Module):
    """PSPNet's pooling module: pooled context at several grid sizes, concatenated with the input."""

    def __init__(self, cin: int, width: int, scales=(1, 2, 3, 6)):
        super().__init__()
        self.scales = tuple(scales)
        self.branches = nn.ModuleList(_cbr(cin, width) for _ in self.scales)
        self.bottleneck = _cbr(cin + width * len(self.scales), width, 3)

    def forward(self, x: Tensor) -> Tensor:
        size = x.shape[-2:]
        pooled = [bilinear_resize(b(F.adaptive_avg_pool2d(x, s)), size) for s, b in zip(self.scales, self.branches)]
        return self.bottleneck(torch.cat([x] + pooled, 1))


class FPNDecoder(nn.Module):
    """FPN top-down fuse of all stages (UPerNet when `ppm`: pyramid pooling on the deepest)."""

    def __init__(self, channels: Sequence[int], width: int, ppm: bool = False, dropout: float = 0.1):
        super().__init__()
        self.ppm = PyramidPooling(channels[-1], width) if ppm else None
        lateral = list(channels[:-1]) if ppm else list(channels)
        self.lateral = nn.ModuleList(_cbr(c, width) for c in lateral)
        self.smooth = nn.ModuleList(_cbr(width, width, 3) for _ in lateral)
        n = len(channels)
        self.fuse = nn.Sequential(_cbr(width * n, width, 3), nn.Dropout2d(dropout))

    def forward(self, feats: List[Tensor]) -> Tensor:
        lat = [l(f) for l, f in zip(self.lateral, feats)]
        if self.ppm is not None:
            lat.append(self.ppm(feats[-1]))
        for i in range(len(lat) - 1, 0, -1):
            lat[i - 1] = lat[i - 1] + bilinear_resize(lat[i], lat[i - 1].shape[-2:])
        outs = [s(x) for s, x in zip(self.smooth, lat)] + lat[len(self.smooth):]
        size = outs[0].shape[-2:]
        return self.fuse(torch.cat([bilinear_resize(o, size) for o in outs], 1))


class Segmenter(nn.Module):
    """Encoder + decoder + 1x1 classifier; logits upsampled bilinearly to the input size."""

    def __init__(self, encoder: Encoder, decoder: nn.Module, width: int, num_classes: int, name: str = ""):
        super().__init__()
        self.encoder, self.decoder = encoder, decoder
        self.classifier = nn.Conv2d(width, num_classes, 1)
        self.num_classes, self.name = int(num_classes), name
        self.feature_channels = list(encoder.channels)
        self.width = int(width)

    def forward(self, x: Tensor) -> Dict[str, Any]:
        feats = self.encoder(x)
        dec = self.decoder(feats)
        logits = bilinear_resize(self.classifier(dec), x.shape[-2:])
        return {"logits": logits, "features": feats, "decoder": dec}


def split_name(name: str, key: str = "segmenter"):
    """`"segformer_pvt_v2_b0"` -> `("segformer", "pvt_v2_b0")`; errors name `key` and list the valid values."""
    decoder, _, encoder = name.partition("_")
    if decoder not in DECODERS or not encoder:
        raise ValueError(
            f"{key}='{name}': expected '<decoder>_<timm encoder>' with decoder one of "
            f"{', '.join(DECODERS)} (e.g. deeplabv3_resnet18, segformer_pvt_v2_b0)"
        )
    if not timm.is_model(encoder):
        raise ValueError(
            f"{key}='{name}': timm has no encoder '{encoder}' (valid names: timm.list_models()); "
            f"expected '<decoder>_<timm encoder>', e.g. deeplabv3_resnet18, segformer_pvt_v2_b0"
        )
    return decoder, encoder


def build_segmenter(
    name: str, num_classes: int, width: int = 256, pretrained: bool = False,
    output_stride: int = 8, img_size: Optional[Sequence[int]] = None,
    out_indices: Optional[Sequence[int]] = None, dropout: float = 0.1,
    aspp_rates: Sequence[int] = (12, 24, 36), encoder_kwargs: Optional[Mapping[str, Any]] = None,
    key: str = "segmenter",
) -> Segmenter:
    """A segmenter by name; `width` sets the decoder size, `encoder_kwargs` go to timm (tiny encoders).

    `key` is the config section (teacher / student) that errors name.
    """
    decoder_name, encoder_name = split_name(name, f"{key}.name")
    kwargs = dict(encoder_kwargs or {})
    try:
        enc = Encoder(encoder_name, pretrained, output_stride, img_size, out_indices, **kwargs)
    except RuntimeError as err:
        if not isinstance(err.__cause__, (OSError, ConnectionError)):
            raise
        raise RuntimeError(
            f"{key}.pretrained=true: could not fetch ImageNet weights for '{encoder_name}' "
            f"({err.__cause__}); pre-download them into the timm / Hugging Face cache (HF_HOME) or set "
            f"{key}.pretrained=false"
        ) from err
    if decoder_name == "deeplabv3":
        dec = ASPPDecoder(enc.channels, width, tuple(aspp_rates), dropout)
    elif decoder_name == "segformer":
        dec = MLPDecoder(enc.channels, width, dropout)
    else:
        dec = FPNDecoder(enc.channels, width, ppm=decoder_name == "upernet", dropout=dropout)
    return Segmenter(enc, dec, width, num_classes, name)
