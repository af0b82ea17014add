"""A run's identity: whether a run folder may be continued with a config (only hardware, logging
and display may change), and the folder name of its results-relevant overrides.

A run folder is `<out_dir>/<seq>/<method preset>/<overrides>/seed<k>`. `<overrides>` is `default`
when the config changes nothing that matters for results against its presets (seq + method), else
an 8-hex hash of those changes (`config_key`), which are written beside the seed folders as
`overrides.yaml`. So two configurations never share a folder and one configuration always finds
its own again: a sweep needs no hand-made `run.name`.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any, Dict

import yaml
from omegaconf import DictConfig, OmegaConf

from lhl.core.errors import UsageError
from lhl.config import Config, experiments_dir, method_tag
from lhl.config.keys import RESUMABLE_CHANGES, flatten
from lhl.runs.folder import RunFolder


#: keys that are parts of the run folder's path, not of its overrides name
IN_PATH = ("run.", "sequence.name")
DEFAULT_KEY = "default"


def run_folder_of(cfg: DictConfig) -> RunFolder:
    """`run.out_dir/run.name`, by default `<out_dir>/<seq>/<method preset>/<overrides>/seed<k>`
    (`<overrides>`: `default`, or a hash of the results-relevant overrides)."""
    name = cfg.run.name or (
        f"{cfg.sequence.name}/{method_tag(cfg)}/{config_key(results_overrides(cfg))}/seed{cfg.run.seed}"
    )
    return RunFolder(Path(cfg.run.out_dir) / name)


def check_same_run(run_dir: Path, cfg: DictConfig) -> None:
    """Refuse to continue a run folder made with settings that change the results."""
    record_overrides(run_dir, cfg)
    path = RunFolder(Path(run_dir)).config
    if not path.is_file():
        return
    old = flatten(OmegaConf.to_container(OmegaConf.load(path), resolve=True))
    new = flatten(OmegaConf.to_container(cfg, resolve=True))
    # a key added to the schema after the folder was made counts as its default there
    defaults = flatten(OmegaConf.to_container(OmegaConf.structured(Config), resolve=True))
    for key in sorted(set(old) | set(new)):
        before = old.get(key, defaults.get(key))
        if key.startswith(RESUMABLE_CHANGES) or before == new.get(key):
            continue
        raise UsageError(
            f"{path}: this run folder was made with {key}={before!r}, not {new.get(key)!r}. "
            "Use another run.name / run.out_dir, set the old value, or delete the folder to start over."
        )


def _canonical(v: Any) -> Any:
    """3 and 3.0 are the same setting (a method option typed in either form)."""
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, (list, tuple)):
        return [_canonical(x) for x in v]
    return v


def _relevant(cfg: DictConfig) -> Dict[str, Any]:
    """Every results-relevant key of `cfg`, flat; the method section as its checked Options."""
    from lhl.config.resolve import method_options

    flat = {k: v for k, v in flatten(OmegaConf.to_container(cfg, resolve=True)).items()
            if not k.startswith("method.")}
    _, options = method_options(cfg)
    flat.update(flatten({"method": {"name": cfg.method.name, **dataclasses.asdict(options)}}))
    return {k: _canonical(v) for k, v in flat.items() if not k.startswith(RESUMABLE_CHANGES + IN_PATH)}


def preset_config(cfg: DictConfig) -> DictConfig:
    """The config of `cfg`'s presets alone: its sequence preset (when one has that name), its method
    preset (or bare method name) and its seed."""
    from lhl.config.compose import load_config as compose

    args = [f"method={method_tag(cfg)}", f"seed={cfg.run.seed}"]
    if (experiments_dir() / "seq" / f"{cfg.sequence.name}.yaml").is_file():
        args.append(f"seq={cfg.sequence.name}")
    return compose([], args)


def results_overrides(cfg: DictConfig) -> Dict[str, Any]:
    """{dotted key: value} where `cfg` differs from its presets in something that changes results."""
    mine, base = _relevant(cfg), _relevant(preset_config(cfg))
    return {k: mine.get(k) for k in sorted(set(mine) | set(base)) if mine.get(k) != base.get(k)}


def config_key(overrides: Dict[str, Any]) -> str:
    """`default` for no overrides, else a short stable hash of them."""
    if not overrides:
        return DEFAULT_KEY
    text = json.dumps(overrides, sort_keys=True, default=str)
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:8]


def overrides_text(overrides: Dict[str, Any]) -> str:
    head = "# results-relevant settings of these runs that differ from their seq/method presets\n"
    return head + (yaml.safe_dump(overrides, sort_keys=True, default_flow_style=False) if overrides else "{}\n")


def record_overrides(run_dir: Path, cfg: DictConfig) -> None:
    """Write `overrides.yaml` beside the seed folders of a default-named run (once); an existing
    one that differs means two configurations hashed alike, which is refused."""
    if cfg.run.name:
        return
    overrides = results_overrides(cfg)
    path = RunFolder(Path(run_dir)).overrides
    if path.is_file():
        before = yaml.safe_load(path.read_text()) or {}
        if json.dumps(before, sort_keys=True, default=str) != json.dumps(overrides, sort_keys=True, default=str):
            raise UsageError(f"{path} records other overrides ({before}) than this run's ({overrides}); "
                             "set run.name to choose a folder")
        return
    from lhl.core.io import atomic_write_text

    atomic_write_text(path, overrides_text(overrides))
