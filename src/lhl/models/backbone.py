"""Backbones from timm (`features_only`): dilated ResNet-18 at output stride 8 by default (the release)."""
from __future__ import annotations

from typing import Sequence

import timm
from torch import Tensor, nn

_CNN_STRIDE_FAMILIES = ("resnet", "resnext", "wide_resnet", "regnet", "mobilenet", "efficientnet")


def create_timm_features(
    name: str, pretrained: bool = False, out_indices: Sequence[int] | None = None,
    output_stride: int | None = None, **kwargs,
) -> nn.Module:
    """`timm.create_model(features_only=True)` with a clear error when weights cannot be fetched."""
    extra = dict(kwargs)
    if output_stride and output_stride != 32:
        extra["output_stride"] = output_stride
    if out_indices is not None:
        extra["out_indices"] = tuple(out_indices)
    try:
        return timm.create_model(name, pretrained=pretrained, features_only=True, **extra)
    except RuntimeError as err:
        if "Unknown model" in str(err) or "not found" in str(err).lower():
            raise ValueError(
                f"model.backbone: timm has no model '{name}' (see timm.list_models())"
            ) from err
        raise
    except (OSError, ConnectionError) as err:  # offline: huggingface_hub / urllib errors
        raise RuntimeError(
            f"model.pretrained=true: could not fetch ImageNet weights for '{name}' ({err}). "
            "This machine seems offline: pre-download the weights into the timm/Hugging Face "
            "cache (HF_HOME), or set model.pretrained=false."
        ) from err


class Backbone(nn.Module):
    """The deepest feature map of a timm network; `out_channels` and `stride` describe it."""

    def __init__(self, name: str = "resnet18", pretrained: bool = False, output_stride: int = 8):
        super().__init__()
        kwargs = {}
        if name.startswith(_CNN_STRIDE_FAMILIES):
            kwargs["output_stride"] = output_stride
        try:
            self.body = create_timm_features(name, pretrained, **kwargs)
        except TypeError as err:
            raise ValueError(
                f"model.output_stride={output_stride}: backbone '{name}' does not support a "
                "dilated output stride; use model.output_stride=32"
            ) from err
        last = len(self.body.feature_info) - 1
        self.out_channels = self.body.feature_info.channels()[last]
        self.stride = self.body.feature_info.reduction()[last]
        self.name = name

    def forward(self, x: Tensor) -> Tensor:
        feat = self.body(x)[-1]
        if feat.ndim == 4 and feat.shape[1] != self.out_channels:  # NHWC transformers (Swin)
            feat = feat.permute(0, 3, 1, 2)
        return feat.contiguous()
