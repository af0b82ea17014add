"""Configs: a typed OmegaConf schema, YAML files under `experiments/`, `key=value` overrides.

`load_config(files, overrides)` merges, in order: the schema defaults, `experiments/seq/<seq>.yaml`
(when `seq=` is given), `experiments/method/<method>.yaml` (when `method=` is given), any YAML files
named on the command line, then the dotted overrides. An unknown or misspelled key is an error that
names the key and the file it came from.
"""
from __future__ import annotations

import difflib
import importlib.util
import os
from pathlib import Path
from typing import List, Sequence

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

from lhl.config.schema import Config
from lhl.core.errors import UsageError
from lhl.core.optim import SCHEDULES


class ConfigError(UsageError):
    """A config problem, with the file, the key and the fix in its message."""


#: command-line shortcuts: `seq=nyu_s1 method=had seed=1 gpus=4 nodes=2 logger=wandb`
SHORTCUTS = {
    "seed": "run.seed",
    "gpus": "train.devices",
    "nodes": "train.num_nodes",
    "logger": "logger.name",
    "name": "run.name",
    "out": "run.out_dir",
}


def experiments_dir() -> Path:
    """The presets (seq/, method/, kd/, slurm/): a user folder only when given explicitly
    (`$LHL_EXPERIMENTS`, set by `lhl --experiments DIR ...`), else the ones shipped in the package
    as `lhl.experiments` (the repository's top-level `experiments/`, mapped by setup.py)."""
    env = os.environ.get("LHL_EXPERIMENTS")
    if env:
        return Path(env)
    from importlib.resources import files

    try:
        return Path(str(files("lhl.experiments")))
    except ModuleNotFoundError:  # an editable install made before the mapping: the source tree's
        return Path(__file__).resolve().parents[3] / "experiments"


def _suggest(word: str, valid) -> str:
    close = difflib.get_close_matches(str(word), [str(v) for v in valid], n=1)
    return f" Did you mean '{close[0]}'?" if close else ""


def _key_hint(base: DictConfig, key: str) -> str:
    """'Did you mean ...' with the closest valid key of the misspelled key's own section."""
    *section, last = str(key).split(".")
    node = base
    for part in section:
        if not isinstance(node, DictConfig) or part not in node:
            return ""
        node = node[part]
    if not isinstance(node, DictConfig):
        return ""
    hint = _suggest(last, node.keys())
    return hint.replace("'", "'" + "".join(p + "." for p in section), 1) if hint else ""


def _merge(base: DictConfig, other: DictConfig, source: str) -> DictConfig:
    try:
        return OmegaConf.merge(base, other)
    except ConfigKeyError as err:
        key = err.full_key or getattr(err, "key", "?")
        raise ConfigError(
            f"{source}: unknown config key '{key}'.{_key_hint(base, key)} Valid top-level sections "
            f"are {', '.join(base.keys())} (see src/lhl/config/schema.py for every key)."
        ) from None
    except OmegaConfBaseException as err:
        raise ConfigError(f"{source}: bad value for '{err.full_key}': {err.msg}") from None


def _load_yaml(path: Path) -> DictConfig:
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        cfg = OmegaConf.load(path)
    except Exception as err:  # yaml syntax errors
        raise ConfigError(f"{path}: cannot parse YAML: {err}") from None
    if not isinstance(cfg, DictConfig):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    return cfg


def _group_file(group: str, name: str) -> Path:
    path = experiments_dir() / group / f"{name}.yaml"
    if not path.is_file():
        have = sorted(p.stem for p in (experiments_dir() / group).glob("*.yaml"))
        raise ConfigError(
            f"no {group} preset '{name}' ({path} does not exist).{_suggest(name, have)} "
            f"Available: {', '.join(have)} (lhl list)"
        )
    return path


def load_config(files: Sequence[str | Path] = (), overrides: Sequence[str] = ()) -> DictConfig:
    """Compose the run config; see the module docstring for the order."""
    cfg = OmegaConf.structured(Config)
    plain: List[str] = []
    seq = method = None
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"command line: '{item}' is not key=value (e.g. train.epochs=3)")
        key, value = item.split("=", 1)
        if key == "seq":
            seq = value
        elif key == "method":
            method = value
        else:
            plain.append(f"{SHORTCUTS.get(key, key)}={value}")
    layers: List[tuple] = []
    if seq:
        layers.append((_group_file("seq", seq), None))
    if method:
        path = experiments_dir() / "method" / f"{method}.yaml"
        if not path.is_file():
            _check_method_name(method)
        layers.append((path, None) if path.is_file() else (None, {"method": {"name": method}}))
    for f in files:
        layers.append((Path(f), None))
    for path, inline in layers:
        if path is not None:
            cfg = _merge(cfg, _load_yaml(path), str(path))
            if path.parent.name == "method":  # a method file replaces the method section
                cfg.method = _load_yaml(path).method
        else:
            cfg.method = inline["method"]
    if seq and not any("sequence.name" in p for p in plain):
        cfg.sequence.name = seq
    if method:
        cfg.run.method_tag = method
    cfg = apply_overrides(cfg, plain)
    validate(cfg)
    return cfg


def apply_overrides(cfg: DictConfig, overrides: List[str]) -> DictConfig:
    """Merge command-line `key=value` overrides into `cfg`; errors name the key and the fix."""
    try:
        dot = OmegaConf.from_dotlist(list(overrides))
    except Exception as err:
        raise ConfigError(f"command line: cannot parse overrides {list(overrides)}: {err}") from None
    return _merge(cfg, dot, "command line")


def _check_method_name(name: str) -> None:
    """`method=NAME` without a preset of that name must be a registered method."""
    from lhl.core.registry import METHODS

    if name in METHODS:
        return
    have = sorted({p.stem for p in (experiments_dir() / "method").glob("*.yaml")} | set(METHODS))
    raise ConfigError(f"method.name: unknown method '{name}' (method={name}: no preset or registered method "
                      f"of that name).{_suggest(name, have)} Available: {', '.join(have)} (lhl list)")


def validate(cfg: DictConfig) -> None:
    """Checks that the schema's types cannot express."""
    if "name" not in cfg.method:
        raise ConfigError("method: the section needs a 'name' (e.g. method=had)")
    if cfg.eval.reduction not in ("global", "mtan"):
        raise ConfigError(f"eval.reduction={cfg.eval.reduction!r}: use 'global' or 'mtan'")
    if cfg.logger.name not in ("csv", "wandb", "tensorboard", "none"):
        raise ConfigError(
            f"logger.name={cfg.logger.name!r}: use csv, wandb, tensorboard or none"
        )
    if cfg.logger.name == "tensorboard" and not any(
        importlib.util.find_spec(m) for m in ("tensorboard", "tensorboardX")
    ):
        raise ConfigError("logger=tensorboard needs TensorBoard, an extra: pip install 'lhl[tensorboard]'")
    if not cfg.sequence.tasks:
        raise ConfigError("sequence.tasks: the sequence needs at least one task")
    if len(set(cfg.sequence.tasks)) != len(cfg.sequence.tasks):
        raise ConfigError(f"sequence.tasks={list(cfg.sequence.tasks)}: a task appears twice")
    if cfg.data.normal_x_channel not in (None, 0, 1, 2):
        raise ConfigError(
            f"data.normal_x_channel={cfg.data.normal_x_channel!r}: the stored normal channel (0, 1 or 2) "
            "that holds x (image right), or null for the dataset's default"
        )
    if cfg.train.teacher_pass not in ("shared", "per_task"):
        raise ConfigError(f"train.teacher_pass={cfg.train.teacher_pass!r}: use shared or per_task")
    if cfg.train.optimizer not in ("adam", "adamw", "sgd"):
        raise ConfigError(f"train.optimizer={cfg.train.optimizer!r}: use adam, adamw or sgd")
    if cfg.train.lr_schedule not in SCHEDULES:
        raise ConfigError(f"train.lr_schedule={cfg.train.lr_schedule!r}: use {', '.join(SCHEDULES)}")


def method_tag(cfg: DictConfig) -> str:
    """How runs of this method are named (folders, W&B groups): the preset name, else method.name."""
    return cfg.run.method_tag or cfg.method.name


def to_yaml(cfg: DictConfig) -> str:
    return OmegaConf.to_yaml(cfg, resolve=True)
