"""Whether a run folder may be continued with a config: only hardware, logging and display may change."""
from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from lhl.config import Config


#: keys that may change between a run and its resumption (hardware, logging, progress display)
RESUMABLE_CHANGES = (
    "run.resume", "logger", "train.progress_bar", "train.log_every_n_steps", "data.num_workers",
    "data.eval_batch_size", "train.devices", "train.num_nodes", "train.strategy", "train.accelerator",
    "train.precision", "train.compile", "train.channels_last", "train.teacher_pass",
    "eval.gallery_samples",
)


def _flat(d, prefix=""):
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and k not in ("options", "method"):
            out.update(_flat(v, key + "."))
        else:
            out[key] = v
    return out


def check_same_run(run_dir: Path, cfg: DictConfig) -> None:
    """Refuse to continue a run folder made with settings that change the results."""
    path = run_dir / "config.yaml"
    if not path.is_file():
        return
    old = _flat(OmegaConf.to_container(OmegaConf.load(path), resolve=True))
    new = _flat(OmegaConf.to_container(cfg, resolve=True))
    # a key added to the schema after the folder was made counts as its default there
    defaults = _flat(OmegaConf.to_container(OmegaConf.structured(Config), resolve=True))
    for key in sorted(set(old) | set(new)):
        before = old.get(key, defaults.get(key))
        if key.startswith(RESUMABLE_CHANGES) or before == new.get(key):
            continue
        raise ValueError(
            f"{path}: this run folder was made with {key}={before!r}, not {new.get(key)!r}. "
            "Use another run.name / run.out_dir, set the old value, or delete the folder to start over."
        )
