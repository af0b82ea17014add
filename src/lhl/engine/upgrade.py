"""The architecture upgrade at a phase boundary (`model.upgrade_at`, `model.upgrade_to`).

Phases before `upgrade_at` train `model.backbone`; from `upgrade_at` on the network is built on
`upgrade_to`'s encoder with the run's other model settings (heads, initialisation). At the boundary the old network, frozen,
becomes the upgrade phase's teacher and the new one gets a blank head for every task seen so far
(the method decides whether they are distilled: `lhl.methods.shared.upgrade`). A phase checkpoint
records the architecture it holds, so a resumed run rebuilds the right one on either side.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Dict, List, Tuple

from omegaconf import DictConfig

from lhl.config.resolve import timm_kwargs
from lhl.config.upgrade import upgrade_encoder
from lhl.core.errors import UsageError
from lhl.data.protocol import Phase
from lhl.engine.build import build_network
from lhl.methods.base import Method
from lhl.methods.shared.upgrade import check_stages, upgrade_settings
from lhl.models import MultiHeadPredictor
from lhl.models.backbone import Backbone
from lhl.models.frozen import freeze_copy
from lhl.tasks import TaskSpec


def architecture_at(cfg: DictConfig, index: int) -> str:
    """The backbone phase `index` trains: `model.upgrade_to`'s encoder from `upgrade_at` on."""
    at = cfg.model.get("upgrade_at")
    if at is not None and index >= int(at):
        return upgrade_encoder(str(cfg.model.upgrade_to))
    return str(cfg.model.backbone)


def architectures(cfg: DictConfig, plan: List[Phase]) -> List[str]:
    """The backbone of every phase of the plan (what `results.json` records)."""
    return [architecture_at(cfg, p.index) for p in plan]


def build_architecture(cfg: DictConfig, name: str) -> MultiHeadPredictor:
    """The run's network (`build_network`) on backbone `name`: every other model setting, the
    initialisation (`model.pretrained`, `model.init`) included, is the run's."""
    if name == str(cfg.model.backbone):
        return build_network(cfg)
    other = copy.deepcopy(cfg)
    other.model.backbone = name
    other.model.timm_kwargs = {}  # model.timm_kwargs describe model.backbone, not the upgrade's encoder
    return build_network(other)


def checked_architecture(cfg: DictConfig, blob: Dict, index: int, path: Path) -> str:
    """The architecture a phase checkpoint holds, checked against the one this config puts there."""
    held = blob.get("architecture") or str(cfg.model.backbone)  # checkpoints before the upgrade existed
    expected = architecture_at(cfg, index)
    if held != expected:
        raise ValueError(
            f"{path}: holds a '{held}' network, but this config trains '{expected}' at phase {index} "
            f"(model.backbone / model.upgrade_at / model.upgrade_to); set them as the run was made or "
            "start in a new folder"
        )
    return held


def cross_boundary(cfg: DictConfig, phase: Phase, network: MultiHeadPredictor,
                   specs: Dict[str, TaskSpec]) -> Tuple[MultiHeadPredictor, MultiHeadPredictor]:
    """(new network with blank heads for every task `network` has, frozen copy of `network` on the
    phase's old tasks: the teacher). Call with the phase's seed set: the new weights follow from it."""
    teacher = freeze_copy(network, list(phase.old_tasks))
    new = build_architecture(cfg, architecture_at(cfg, phase.index))
    for name in network.task_names:
        new.add_head(specs[name])
    return new, teacher


def check_upgrade_networks(cfg: DictConfig, method: Method) -> None:
    """Before anything trains: both encoders build with the run's model settings, and the method's
    feature-distillation stages exist in both (errors name the key)."""
    if cfg.model.get("upgrade_at") is None:
        return
    m = cfg.model
    encoders = {}
    for key, name in (("model.backbone", str(m.backbone)), ("model.upgrade_to", architecture_at(cfg, int(m.upgrade_at)))):
        try:
            kwargs = timm_kwargs(m) if key == "model.backbone" else None  # they describe model.backbone only
            encoders[key] = Backbone(name, False, m.output_stride, m.zero_init_last, kwargs)
        except ValueError as err:
            raise UsageError(f"{key}='{name}': {err}") from None
    o = upgrade_settings(method.opts)
    if method.uses_teacher and o.upgrade_feature_kd and o.upgrade_old_heads == "distill":
        for key, enc in encoders.items():
            check_stages(o.upgrade_feature_stages, len(enc.channels), f"{key}='{enc.name}'")

