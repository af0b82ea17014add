"""Encoders from timm (`features_only`): every stage as NCHW (`Encoder`, the segmenters'), or the
deepest one (`Backbone`, dilated ResNet-18 at output stride 8 by default, the release)."""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

import timm
from torch import Tensor, nn

from lhl.config.upgrade import FIXED_SIZE_FAMILIES

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


class Encoder(nn.Module):
    """A timm `features_only` network returning every stage as an NCHW map (timm's `output_fmt`
    tells NHWC networks such as Swin apart)."""

    def __init__(
        self, name: str, pretrained: bool = False, output_stride: int = 8,
        img_size: Optional[Sequence[int]] = None, out_indices: Optional[Sequence[int]] = None,
        **timm_kwargs: Any,
    ):
        super().__init__()
        kwargs = dict(timm_kwargs)
        stride = output_stride if name.startswith(_CNN_STRIDE_FAMILIES) else None
        if img_size is not None and name.startswith(FIXED_SIZE_FAMILIES):
            kwargs["img_size"] = tuple(int(s) for s in img_size)
        self.body = create_timm_features(name, pretrained, out_indices, stride, **kwargs)
        self.channels: List[int] = list(self.body.feature_info.channels())
        self.reductions: List[int] = list(self.body.feature_info.reduction())
        self.nhwc = str(getattr(self.body, "output_fmt", "NCHW")).upper().endswith("NHWC")

    def forward(self, x: Tensor) -> List[Tensor]:
        feats = self.body(x)
        if self.nhwc:
            feats = [f.permute(0, 3, 1, 2) for f in feats]
        return [f.contiguous() for f in feats]


class Backbone(Encoder):
    """The deepest stage of an `Encoder`; `out_channels` and `stride` describe it.

    `zero_init_last=False` keeps the last BatchNorm of each residual block at weight 1 (torchvision's
    and the release's init) instead of timm's zero; weights loaded with `pretrained` override both.
    """

    def __init__(self, name: str = "resnet18", pretrained: bool = False, output_stride: int = 8,
                 zero_init_last: bool = True, timm_kwargs: Optional[Dict[str, Any]] = None):
        extra = {} if zero_init_last else {"zero_init_last": False}
        timm_kwargs = dict(timm_kwargs or {})
        clash = sorted(set(timm_kwargs) & {"pretrained", "features_only", "output_stride", "out_indices", "zero_init_last"})
        if clash:
            raise ValueError(f"model.timm_kwargs: {', '.join(clash)} are set by lhl (model.* keys); remove them")
        extra.update(timm_kwargs)
        try:
            super().__init__(name, pretrained, output_stride, **extra)
        except TypeError as err:
            bad = [k for k in timm_kwargs if k in str(err)]  # timm names the unexpected keyword
            if bad:
                raise ValueError(
                    f"model.timm_kwargs: timm's '{name}' takes no argument {', '.join(bad)} ({err}); "
                    "fix the key or remove it"
                ) from err
            if "zero_init_last" in str(err):
                raise ValueError(
                    f"model.zero_init_last=false: backbone '{name}' has no residual blocks to initialise "
                    "that way (timm takes no zero_init_last for it); remove the key"
                ) from err
            raise ValueError(
                f"model.output_stride={output_stride}: backbone '{name}' does not support a "
                "dilated output stride; use model.output_stride=32"
            ) from err
        self.out_channels = self.channels[-1]
        self.stride = self.reductions[-1]
        self.name = name
        self.timm_kwargs = timm_kwargs

    def forward(self, x: Tensor) -> Tensor:
        feat = self.body(x)[-1]
        return (feat.permute(0, 3, 1, 2) if self.nhwc else feat).contiguous()
