"""Checks of an architecture upgrade mid-sequence (`model.upgrade_at`, `model.upgrade_to`), done
with the other config checks before anything runs: both keys or neither, a phase that has a
previous architecture, an encoder the lifelong network can be built on, and a method whose state
survives a change of network (a parameter anchor's does not).
"""
from __future__ import annotations

import dataclasses

from omegaconf import DictConfig

from lhl.config.compose import ConfigError

#: the decoders of `lhl distill`'s segmenters (`<decoder>_<timm encoder>`; `lhl.distill.segmenters`
#: reads them here, the lowest layer that names them)
SEGMENTER_DECODERS = ("deeplabv3", "segformer", "upernet", "fpn")
#: timm families whose position embeddings / windows are fixed by `img_size` at construction
#: (`lhl.models.backbone` sets it for them; an upgrade refuses them)
FIXED_SIZE_FAMILIES = ("vit", "deit", "swin", "beit", "eva", "cait", "xcit", "flexivit")
EXAMPLES = "e.g. pvt_v2_b0 (a Transformer), convnext_atto, resnet18 or deeplabv3_resnet18"


def upgrade_encoder(name: str, key: str = "model.upgrade_to") -> str:
    """The timm encoder named by `model.upgrade_to`: a timm name, or `deeplabv3_<timm encoder>`."""
    import timm

    if timm.is_model(name):
        encoder = name
    else:
        decoder, _, encoder = name.partition("_")
        if decoder not in SEGMENTER_DECODERS or not timm.is_model(encoder):
            raise ConfigError(
                f"{key}='{name}': neither a timm model (timm.list_models()) nor a segmenter name "
                f"'<decoder>_<timm encoder>' with decoder one of {', '.join(SEGMENTER_DECODERS)}; {EXAMPLES}"
            )
        if decoder != "deeplabv3":
            raise ConfigError(
                f"{key}='{name}': the lifelong network puts one DeepLabV3 (ASPP) head per task on its "
                f"encoder, so a '{decoder}' decoder has no per-task form here; use deeplabv3_{encoder} "
                f"or the timm name '{encoder}'"
            )
    if encoder.startswith(FIXED_SIZE_FAMILIES):
        raise ConfigError(
            f"{key}='{name}': timm builds '{encoder}' for one fixed image size, which the lifelong "
            f"network's backbone does not set; use a size-free encoder, {EXAMPLES}"
        )
    return encoder


def _unused_upgrade_options(options) -> None:
    """`method.upgrade_*` set away from its default without an upgrade would change nothing."""
    if not dataclasses.is_dataclass(options):
        return
    for f in dataclasses.fields(options):
        if f.name.startswith("upgrade_"):
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            if getattr(options, f.name) != default:
                raise ConfigError(
                    f"method.{f.name}={getattr(options, f.name)!r} acts only across an architecture "
                    "upgrade: set model.upgrade_at and model.upgrade_to, or remove it"
                )


def check_upgrade(cfg: DictConfig, method_cls, options) -> None:
    """Refuse an upgrade config that cannot run, naming the key and the fix."""
    at, to = cfg.model.get("upgrade_at"), cfg.model.get("upgrade_to")
    if (at is None) != (to is None):
        raise ConfigError(
            "model.upgrade_at and model.upgrade_to go together: set both (e.g. model.upgrade_at=2 "
            "model.upgrade_to=pvt_v2_b0) or neither"
        )
    if at is None:
        _unused_upgrade_options(options)
        return
    refusal = getattr(method_cls, "upgrade_refusal", None)
    if refusal:
        raise ConfigError(
            f"model.upgrade_at={at}: method '{cfg.method.name}' cannot cross an architecture upgrade: "
            f"{refusal}. Use a distillation method (lwf, had, icarl) or replay (er, der, derpp), or "
            "remove model.upgrade_at / model.upgrade_to"
        )
    n = len(cfg.sequence.tasks)
    if isinstance(at, bool) or not isinstance(at, int) or not 1 <= at <= n - 1:
        raise ConfigError(
            f"model.upgrade_at={at!r}: must be a phase index in 1..{n - 1} (the sequence has {n} phases, "
            "numbered from 0; phase 0 has no earlier architecture to upgrade from)"
        )
    upgrade_encoder(str(to))
