"""Experiment loggers: CSV (default), TensorBoard, Weights & Biases (offline without credentials).

CSV and TensorBoard get one version folder per phase (`logs/phase_<i>`, `tb/phase_<i>`). W&B gets
one run for the whole sequence, beside the CSV log (Lightning takes a list of loggers): its id is
kept in the run folder (`wandb_run_id.txt`), so a requeued or resumed sequence continues the same
run, and it is grouped as `<seq>/<method preset>/<overrides key of the run folder>`, so runs that
differ only in seed land in one group and differently configured ones do not.
"""
from __future__ import annotations

import os
import pathlib
from typing import List, Optional, Tuple

from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from lhl.config import method_tag
from lhl.runs.folder import RunFolder
from lhl.runs.identity import config_key, results_overrides


def _wandb_settings():
    """wandb's own settings: its settings file (`$WANDB_CONFIG_DIR/settings`, default
    ~/.config/wandb/settings), then the WANDB_* environment variables, as `wandb.init` reads them."""
    import wandb

    settings = wandb.Settings()
    config_dir = os.environ.get("WANDB_CONFIG_DIR")
    settings.settings_system = str(pathlib.Path(config_dir).expanduser() / "settings" if config_dir
                                   else pathlib.Path("~", ".config", "wandb", "settings").expanduser())
    settings.update_from_system_settings()
    settings.update_from_env_vars(dict(os.environ))
    return settings


def wandb_offline_default() -> bool:
    """Offline unless wandb would find credentials, by wandb's own rules: WANDB_API_KEY (or
    WANDB_IDENTITY_TOKEN_FILE), a `$NETRC` / ~/.netrc entry for the configured host
    (WANDB_BASE_URL or the settings file's base_url), or an api_key in wandb's settings file;
    WANDB_MODE (or the settings file's mode) offline / dryrun / disabled means offline, online
    means online."""
    mode = os.environ.get("WANDB_MODE")
    if mode == "online":
        return False
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return mode in ("offline", "dryrun", "disabled")
    try:
        from wandb.sdk.lib.wbauth import wbnetrc

        settings = _wandb_settings()
        if settings.mode in ("offline", "dryrun", "disabled"):
            return True
        return not (settings.api_key or wbnetrc.read_netrc_auth(host=settings.base_url))
    except ImportError:  # another wandb layout: the plain rules
        netrc = pathlib.Path(os.environ.get("NETRC") or pathlib.Path.home() / ".netrc").expanduser()
        host = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai").split("://")[-1].split("/")[0]
        return mode in ("offline", "dryrun", "disabled") or not (
            netrc.is_file() and host in netrc.read_text(errors="ignore"))
    except Exception:  # a malformed key or settings file: let wandb.init report it online
        return False


def wandb_group(cfg: DictConfig) -> str:
    """`<seq>/<method preset>/<overrides key>`: the key of the run folder (`default`, or a hash of
    the results-relevant overrides), so seeds of one configuration share a group and no two
    configurations do."""
    return f"{cfg.sequence.name}/{method_tag(cfg)}/{config_key(results_overrides(cfg))}"


def wandb_run_id(folder: RunFolder) -> str:
    """The run folder's W&B run id, made and stored on first use (rank 0)."""
    path = folder.wandb_run_id
    if path.is_file() and path.read_text().strip():
        return path.read_text().strip()
    import secrets  # not `random`: the run's seeded generators stay untouched

    run_id = secrets.token_hex(6)
    if rank_zero_only.rank == 0:
        from lhl.core.io import atomic_write_text

        atomic_write_text(path, run_id + "\n")
    return run_id


def build_loggers(cfg: DictConfig, folder: RunFolder, phase: int, wandb_logger=None) -> Tuple[List, Optional[object]]:
    """(the phase Trainer's loggers, the sequence's W&B logger or None)."""
    kind = cfg.logger.name
    run_dir = folder.root
    if kind == "none":
        return [], None
    if kind == "tensorboard":
        from lightning.pytorch.loggers import TensorBoardLogger

        return [TensorBoardLogger(save_dir=str(run_dir), name="tb", version=f"phase_{phase}")], None
    from lightning.pytorch.loggers import CSVLogger

    csv = CSVLogger(save_dir=str(run_dir), name="logs", version=f"phase_{phase}")
    if kind == "csv":
        return [csv], None
    if wandb_logger is None:
        from lhl.engine.wandb_logger import SequenceWandbLogger

        offline = cfg.logger.offline if cfg.logger.offline is not None else wandb_offline_default()
        group = cfg.logger.group or wandb_group(cfg)
        wandb_logger = SequenceWandbLogger(
            project=cfg.logger.project, entity=cfg.logger.entity, group=group,
            name=f"{cfg.sequence.name}-{method_tag(cfg)}-seed{cfg.run.seed}", id=wandb_run_id(folder),
            save_dir=str(run_dir), offline=offline, config=OmegaConf.to_container(cfg, resolve=True),
        )
    return [csv, wandb_logger], wandb_logger
