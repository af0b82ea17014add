"""The registered distillers (`lhl.core.registry.DISTILLERS`): names in table order, row labels,
and one built by name from the config."""
from __future__ import annotations

from typing import Optional, Tuple

from omegaconf import DictConfig
from torch import nn

from lhl.core.registry import DISTILLERS


def kd_methods() -> Tuple[str, ...]:
    """Every `run.kd` name in table order (each class's `order`): none, kd, cwd, heteroakd, ..."""
    return tuple(sorted(DISTILLERS, key=lambda name: (DISTILLERS.get(name).order, name)))


def label(kind: str) -> str:
    """The table row of `kind`: "teacher" or the distiller's label."""
    return "teacher" if kind == "teacher" else DISTILLERS.get(kind).label


def needs_teacher(kind: str) -> bool:
    """Whether `kind` learns from the teacher (its rows then depend on the teacher checkpoint)."""
    return bool(DISTILLERS.get(kind).needs_teacher)


def requested_kinds(value: str) -> Tuple[str, ...]:
    """The methods `run.kd` asks for, in table order: "all", one name or a comma-separated list."""
    if str(value).strip() == "all":
        return kd_methods()
    names = [v.strip() for v in str(value).split(",") if v.strip()]
    if not names:
        raise ValueError(f"run.kd='{value}': choose one or more of {', '.join(kd_methods())} (comma-separated) or all")
    for name in names:
        check_kind(name)
    return tuple(k for k in kd_methods() if k in names)


def check_kind(kind: str) -> None:
    """A `run.kd` name that is not registered is an error listing the valid ones."""
    if kind not in DISTILLERS:
        raise ValueError(f"run.kd='{kind}': choose one of {', '.join(kd_methods())} or all")


def build_distiller(kind: str, cfg: DictConfig, teacher: Optional[nn.Module], student: nn.Module) -> nn.Module:
    """The loss module of one registered method, built from the config by its class."""
    check_kind(kind)
    return DISTILLERS.get(kind).from_config(cfg, teacher, student)
