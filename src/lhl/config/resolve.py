"""The checks a composed config needs beyond its schema, done once, before anything is written,
trained or submitted: the method's options against its `Options` dataclass, `data.options` against
the dataset's constructor, and the sequence's tasks against what the dataset offers.

Every entry point (`run`, `compare`, `slurm`, `bench`) resolves its config here, so a typo such as
`method.neww=3` fails on the login node, naming the key and the valid ones, not in the queue.
"""
from __future__ import annotations

import dataclasses
import difflib
import inspect
import warnings
from typing import Any, Dict, List, Optional, Tuple

from omegaconf import DictConfig, OmegaConf

from lhl.config.compose import ConfigError, method_tag
from lhl.core.registry import DATASETS, METHODS

#: constructor arguments every dataset takes that are not options
_SAMPLE_ARGS = ("self", "root", "split", "tasks")


def _near(word: str, valid: List[str]) -> str:
    close = difflib.get_close_matches(str(word), valid, n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def options_from_dict(cls, values: Dict[str, Any], where: str):
    """Build a method's Options dataclass, naming the unknown key and the valid ones.

    A key that is a Python keyword in the dataclass (`lambda_`) may be written without its `_`."""
    valid = {f.name for f in dataclasses.fields(cls)}
    values = {(k + "_" if k + "_" in valid and k not in valid else k): v for k, v in values.items()}
    shown = sorted(v.rstrip("_") for v in valid | {"name"})
    renamed = getattr(cls, "renamed", {})  # options that moved or went: {old name: where, or why}
    for key in values:
        if key not in valid and key in renamed:
            raise ConfigError(f"{where}: 'method.{key}' {renamed[key]}")
        if key not in valid:
            raise ConfigError(
                f"{where}: unknown option 'method.{key}'{_near(key, shown)}; valid options: "
                f"{', '.join(shown)}"
            )
    try:
        return cls(**values)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{where}: {err}") from None


def method_options(cfg: DictConfig):
    """The method class and its checked Options (ER's reservoir seed follows the run's seed)."""
    try:
        cls = METHODS.get(cfg.method.name)
    except KeyError as err:
        raise ConfigError(f"method.name: {err.args[0]}") from None
    opts = {k: v for k, v in OmegaConf.to_container(cfg.method, resolve=True).items() if k != "name"}
    if "seed" in {f.name for f in dataclasses.fields(cls.Options)}:
        opts.setdefault("seed", int(cfg.run.seed))
    tag = method_tag(cfg)
    where = f"method '{tag}' (experiments/method/{tag}.yaml or the command line)"
    return cls, options_from_dict(cls.Options, opts, where)


def dataset_options(cls) -> List[str]:
    """The options a dataset takes: its constructor's named keyword parameters besides root, split, tasks."""
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return [n for n, p in inspect.signature(cls.__init__).parameters.items()
            if p.kind in kinds and n not in _SAMPLE_ARGS]


def checked_options(data_cfg) -> Tuple[type, dict]:
    """The dataset class and `data.options` as a plain dict, every key checked against its constructor."""
    try:
        cls = DATASETS.get(data_cfg.dataset)
    except KeyError as err:
        raise ConfigError(f"data.dataset: {err.args[0]}") from None
    raw = data_cfg.get("options") if isinstance(data_cfg, DictConfig) else getattr(data_cfg, "options", None)
    options = OmegaConf.to_container(raw, resolve=True) if isinstance(raw, DictConfig) else dict(raw or {})
    valid = dataset_options(cls)
    bad = [k for k in options if k not in valid]
    if bad:
        raise ConfigError(
            f"data.options.{bad[0]}: dataset '{data_cfg.dataset}' has no option '{bad[0]}'"
            + _near(bad[0], valid)
            + (f"; also unknown: {bad[1:]}" if bad[1:] else "")
            + f"; valid options: {', '.join(valid) or 'none'}"
        )
    return cls, options


def task_info(data_cfg) -> Dict[str, Tuple[str, int]]:
    """{task name: (task type, channels)} that the configured dataset offers."""
    cls, options = checked_options(data_cfg)
    return dict(cls.task_info(**options))


def timm_kwargs(model_cfg) -> dict:
    """`model.timm_kwargs` as plain Python (lists, not ListConfig) for timm's constructor."""
    kw = model_cfg.get("timm_kwargs") or {}
    return OmegaConf.to_container(kw, resolve=True) if OmegaConf.is_config(kw) else dict(kw)


def sequence_tasks(cfg: DictConfig) -> Dict[str, Tuple[str, int]]:
    """The sequence's tasks in order with their (task type, channels), each offered by the dataset."""
    info = task_info(cfg.data)
    missing = [t for t in cfg.sequence.tasks if t not in info]
    if missing:
        raise ConfigError(
            f"sequence.tasks: {missing} not offered by dataset '{cfg.data.dataset}' (it has "
            f"{sorted(info)}){_near(missing[0], sorted(info))}; fix: drop {missing[0]!r} from sequence.tasks "
            "or choose a dataset (data.dataset) that has it"
        )
    return {t: info[t] for t in cfg.sequence.tasks}


def per_process_batch(data_cfg, world: int) -> int:
    """The batch one process loads: `data.batch_size` (per process), or `data.global_batch_size`
    divided by the world size when that is set (an error if it does not divide)."""
    total = getattr(data_cfg, "global_batch_size", None)
    if total is None:
        return int(data_cfg.batch_size)
    if int(total) < 1 or int(total) % int(world):
        raise ConfigError(
            f"data.global_batch_size={total} does not divide into {world} process(es); choose a "
            f"multiple of {world} or set the per-process data.batch_size instead"
        )
    return int(total) // int(world)


def expected_processes(cfg: DictConfig) -> Optional[int]:
    """train.devices x train.num_nodes when the config fixes it (None for devices=auto / -1)."""
    devices = cfg.train.devices
    if OmegaConf.is_list(devices) or isinstance(devices, (list, tuple)):
        n = len(devices)
    elif str(devices) in ("auto", "-1"):
        return None
    else:
        n = int(devices)
    return n * int(cfg.train.num_nodes)


def check_processes(cfg: DictConfig, world: Optional[int]) -> None:
    """The global batch against the world size; a warning where more than one process changes what
    a preset means (the paper's batch 64 is one process's; mtan averages per process batch)."""
    if world is None:
        return
    per_process_batch(cfg.data, world)
    if world > 1:
        paper = [n for n in (cfg.sequence.name, method_tag(cfg)) if str(n).endswith("_paper")]
        if paper or cfg.eval.reduction == "mtan":
            why = f"preset {paper[0]}" if paper else "eval.reduction=mtan"
            warnings.warn(
                f"{why} runs on {world} processes: data.batch_size={cfg.data.batch_size} is per "
                f"process (global batch {per_process_batch(cfg.data, world) * world}), and mtan's "
                "per-batch averages are taken per process; the release ran one process "
                "(set data.global_batch_size to keep its global batch)", stacklevel=2,
            )


def check_stream(data_cfg) -> None:
    """`data.stream` and `data.val_fraction` (the tuning stream, `lhl.data.tuning`)."""
    stream = data_cfg.get("stream", "report")
    if stream not in ("report", "tune"):
        raise ConfigError(f"data.stream={stream!r}: choose report (the reported split) or tune (the "
                          "tuning stream of `lhl tune`)" + _near(str(stream), ["report", "tune"]))
    fraction = data_cfg.get("val_fraction", 0.1)
    if not 0.0 < float(fraction) < 1.0:
        raise ConfigError(f"data.val_fraction={fraction}: the held-out share of each phase's train slice "
                          "(tuning stream) must be between 0 and 1, e.g. 0.1")


def resolve(cfg: DictConfig) -> DictConfig:
    """Check everything a run will build from `cfg`; returns `cfg` unchanged."""
    every = OmegaConf.select(cfg, "diag.every")
    if every is not None and every < 1:
        raise ConfigError(f"diag.every={every}: the loss-term diagnostics need a positive number of "
                          "training steps (diag.every=10), or null to switch them off")
    check_stream(cfg.data)
    from lhl.config.epochs import check_epochs
    from lhl.config.upgrade import check_upgrade

    check_upgrade(cfg, *method_options(cfg))
    sequence_tasks(cfg)
    check_epochs(cfg, sorted(task_info(cfg.data)))
    world = expected_processes(cfg)
    if world is not None and cfg.data.get("global_batch_size") is not None:
        per_process_batch(cfg.data, world)
    return cfg


def load_config(files=(), overrides=()) -> DictConfig:
    """`lhl.config.compose.load_config`, then `resolve`: the config every entry point runs with."""
    from lhl.config.compose import load_config as compose

    return resolve(compose(files, overrides))
