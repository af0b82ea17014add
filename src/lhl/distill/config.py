"""The `lhl distill` config: the typed schema, then experiments/kd/default.yaml, presets, key=value.

Composed with the machinery of the lifelong runs (`lhl.config.compose`): an unknown key or a
value of the wrong type is a `ConfigError` naming the key and the file it came from.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from omegaconf import DictConfig, ListConfig, OmegaConf

from lhl.config.compose import ConfigError, _load_yaml, _merge, apply_overrides, experiments_dir
from lhl.config.distill_schema import DistillConfig
from lhl.core.optim import OPTIMIZERS


def preset_dir() -> Path:
    """`experiments/kd/`: default.yaml and the named presets."""
    return experiments_dir() / "kd"


def preset_path(name: str) -> Path:
    """A preset argument as a file: a .yaml / .yml path as given, a bare name under experiments/kd/."""
    if Path(name).suffix in (".yaml", ".yml"):
        return Path(name)
    path = preset_dir() / f"{name}.yaml"
    if not path.exists():
        have = sorted(p.stem for p in preset_dir().glob("*.yaml"))
        raise FileNotFoundError(f"distill preset {path} not found (presets: {have})")
    return path


def load_config(files: Sequence[str] = (), overrides: Sequence[str] = ()) -> DictConfig:
    """The schema, default.yaml, the presets `files` in order, then the `key=value` overrides."""
    cfg = OmegaConf.structured(DistillConfig)
    for path in [preset_dir() / "default.yaml"] + [preset_path(str(f)) for f in files]:
        cfg = _merge(cfg, _load_yaml(path), str(path))
    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise ConfigError(f"command line: overrides must be key=value, got {bad}")
    cfg = apply_overrides(cfg, list(overrides))
    validate(cfg)
    return cfg


def _choices():
    """The config keys that take one of a few words, with those words (from the distillers)."""
    from lhl.distill.heteroakd import KL_FORMS, PROJ_SUPERVISION, PROJECTORS, RELIABILITIES, WEIGHT_AXES

    return {"train.optimizer": OPTIMIZERS, "kd.heteroakd.reliability": RELIABILITIES,
            "kd.heteroakd.projector": PROJECTORS, "kd.heteroakd.weight_axis": WEIGHT_AXES,
            "kd.heteroakd.kl_form": KL_FORMS, "kd.heteroakd.projector_supervision": PROJ_SUPERVISION}


def validate(cfg: DictConfig) -> None:
    """Checks the schema's types cannot express (run.kd is checked against the registry at run time;
    stages and channel groups against the segmenters, before the teacher trains)."""
    for key, allowed in _choices().items():
        value = OmegaConf.select(cfg, key)
        if value not in allowed:
            raise ConfigError(f"{key}={value!r}: choose one of {', '.join(allowed)}")
    if not 0 <= cfg.kd.skd.pool_scale <= 1:
        raise ConfigError(f"kd.skd.pool_scale={cfg.kd.skd.pool_scale}: use a fraction of the map size in "
                          "(0, 1], or 0 for 2 x 2 pooling windows")
    if not 0 <= cfg.kd.afdcd.mask_ratio < 1 or len(cfg.kd.afdcd.patch_size) != 2:
        raise ConfigError(f"kd.afdcd: mask_ratio={cfg.kd.afdcd.mask_ratio} must be in [0, 1) and patch_size="
                          f"{list(cfg.kd.afdcd.patch_size)} two ints (height, width)")


def devices(cfg: DictConfig):
    """train.devices as Lightning takes it; one device only, since results.json and teacher.ckpt
    are written without rank-zero guards."""
    value = cfg.train.devices
    value = OmegaConf.to_container(value) if isinstance(value, ListConfig) else value
    if str(len(value) if isinstance(value, list) else value) != "1":
        raise ValueError(
            f"train.devices={value}: `lhl distill` runs on one device; set train.devices=1 "
            "(or a one-element list such as [1] to pick a GPU)"
        )
    return value


def run_name(cfg: DictConfig) -> str:
    """The run folder's name: `run.name`, or `<data>_<teacher>_to_<student>`."""
    return cfg.run.name or f"{cfg.data.name}_{cfg.teacher.name}_to_{cfg.student.name}"
