"""What a lifelong run is built from, given its resolved config: task types, method, network,
the resolved phase plan."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional

import torch
from omegaconf import DictConfig

from lhl.config import ConfigError
from lhl.config.resolve import method_options, sequence_tasks, timm_kwargs
from lhl.core.errors import MissingInput
from lhl.data.protocol import Phase, resolve_plan
from lhl.runs.folder import RunFolder
from lhl.engine.synthetic_init import apply_init
from lhl.methods.base import Method
from lhl.models import MultiHeadPredictor
from lhl.tasks import TaskSpec, build_task


def phases_start_from(cfg: DictConfig) -> Optional[RunFolder]:
    """`run.phases_start_from`: the run folder whose network after phase i-1 starts phase i (i >= 1)
    of this run, checked to hold a run; None when unset."""
    where = cfg.run.get("phases_start_from")
    if where is None:
        return None
    folder = RunFolder(Path(str(where)))
    if not (folder.config.is_file() and folder.results_json.is_file()):
        raise MissingInput(f"run.phases_start_from={where}: no finished lhl run there (its config.yaml "
                                "and results.json are missing); fix: give the folder of a run of the same "
                                "sequence (make curves ISOLATED=1 makes it first)")
    if cfg.model.get("upgrade_at") is not None:
        raise ConfigError("run.phases_start_from with model.upgrade_at: a phase cannot both start from another "
                         "run's network and upgrade its architecture; fix: unset one of them")
    return folder


def build_specs(cfg: DictConfig) -> Dict[str, TaskSpec]:
    """The sequence's task types, in its order."""
    return {t: build_task(kind, t, ch) for t, (kind, ch) in sequence_tasks(cfg).items()}


def build_method(cfg: DictConfig, specs: Dict[str, TaskSpec]) -> Method:
    cls, options = method_options(cfg)
    return cls(options, specs)


def build_plan(method: Method, specs: Dict[str, TaskSpec], upgrade_at: Optional[int] = None) -> List[Phase]:
    return resolve_plan(method.plan(list(specs)), upgrade_at)


def build_network(cfg: DictConfig) -> MultiHeadPredictor:
    m = cfg.model
    net = MultiHeadPredictor(
        backbone=m.backbone, pretrained=m.pretrained, output_stride=m.output_stride,
        head_width=m.head_width, aspp_rates=list(m.aspp_rates), dropout=m.dropout,
        zero_init_last=m.zero_init_last, timm_kwargs=timm_kwargs(m),
    )
    apply_init(net, cfg)
    if cfg.train.channels_last:
        net = net.to(memory_format=torch.channels_last)
    return net
