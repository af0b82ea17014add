"""Experiment loggers: CSV (default), TensorBoard, Weights & Biases (offline without an API key).

CSV and TensorBoard get one version folder per phase (`logs/phase_<i>`); W&B gets one run for the
whole sequence, grouped by sequence and method so that `make compare` lands as one group.
"""
from __future__ import annotations

import os
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from lhl.config import method_tag


def wandb_offline_default() -> bool:
    """Offline unless an API key is configured (env var or ~/.netrc entry)."""
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_MODE") == "online":
        return False
    netrc = Path.home() / ".netrc"
    return not (netrc.is_file() and "api.wandb.ai" in netrc.read_text(errors="ignore"))


def build_logger(cfg: DictConfig, run_dir: Path, phase: int, previous=None):
    kind = cfg.logger.name
    if kind == "none":
        return None
    if kind == "csv":
        from lightning.pytorch.loggers import CSVLogger

        return CSVLogger(save_dir=str(run_dir), name="logs", version=f"phase_{phase}")
    if kind == "tensorboard":
        from lightning.pytorch.loggers import TensorBoardLogger

        return TensorBoardLogger(save_dir=str(run_dir), name="tb", version=f"phase_{phase}")
    if previous is not None:
        return previous
    from lhl.engine.wandb_logger import SequenceWandbLogger

    offline = cfg.logger.offline if cfg.logger.offline is not None else wandb_offline_default()
    group = cfg.logger.group or f"{cfg.sequence.name}/{method_tag(cfg)}"
    return SequenceWandbLogger(
        project=cfg.logger.project, entity=cfg.logger.entity, group=group,
        name=f"{cfg.sequence.name}-{method_tag(cfg)}-seed{cfg.run.seed}",
        save_dir=str(run_dir), offline=offline,
        config=OmegaConf.to_container(cfg, resolve=True),
    )
