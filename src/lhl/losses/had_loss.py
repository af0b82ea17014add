"""`had_loss`: one old task's HAD term from the student's and the teacher's activated outputs, in
any mode, with the ablation switches: the public entry point (`lhl.losses.had_loss`)."""
from __future__ import annotations

from typing import Dict, Tuple, Union

from torch import Tensor

from lhl.losses.had_paper import PaperConfig, paper_had
from lhl.losses.had_parts import MENDS, HADConfig
from lhl.losses.had_terms import had_term
from lhl.tasks import build_task

__all__ = ["MODES", "PAPER_ONLY", "had_config", "had_loss"]

MODES = ("faithful", "fixed", "paper")
#: switches that only `mode: paper` implements (its per-image groups and salience)
PAPER_ONLY = {"group_mean": "geometric", "bins": 2, "salience_source": "loss"}


def had_config(mode: str, **options) -> Union[HADConfig, PaperConfig]:
    """The resolved loss settings of a mode; options that are None follow the mode. `db` / `sg`
    apply in every mode; `group_mean`, `bins`, `salience_source` only in `paper` (elsewhere only
    their defaults are accepted); the mends only in `faithful` / `fixed`."""
    if mode not in MODES:
        raise ValueError(f"HAD mode must be one of {MODES}, got {mode!r}")
    options = {k: v for k, v in options.items() if v is not None}
    if mode == "paper":
        mends = sorted(set(options) & set(MENDS) | set(options) & {"sel_max"})
        if mends:
            raise ValueError(f"HAD mode 'paper' has no release mends or sel_max; got {mends}")
        return PaperConfig(**options)
    wrong = {k: v for k, v in options.items() if k in PAPER_ONLY and v != PAPER_ONLY[k]}
    if wrong:
        raise ValueError(f"{sorted(wrong)} exist only in HAD mode 'paper' (mode {mode!r} keeps the "
                         "release's groups and loss-map salience)")
    rest = {k: v for k, v in options.items() if k not in PAPER_ONLY}
    return HADConfig.for_mode(mode, **rest)


def had_loss(kind: str, student: Tensor, teacher: Tensor, mode: str = "paper", return_parts: bool = False,
             **options) -> Union[Tensor, Tuple[Tensor, Dict[str, Tensor]]]:
    """L_had,j of one old task, before the weighting: `paper` gives L_db + L_sg, `faithful` /
    `fixed` the release's (DB + SG) / 2 (there the teacher becomes the task's pseudo-label).

    student / teacher: the task's activated outputs (semantic log-probabilities [B, C, H, W],
    depth [B, 1, H, W], unit normals [B, 3, H, W], scalar maps [B, C, H, W]). Options: db, sg,
    group_mean, bins, salience_source, scalar_val, num_interval (and, outside `paper`, sel_max
    and the mends). `return_parts=True`: (term, {db, sg, edge_keep}), the parts detached."""
    cfg = had_config(mode, **options)
    if isinstance(cfg, PaperConfig):
        term, db, sg, keep = paper_had(kind, student, teacher, cfg)
        parts = {"db": db.detach(), "sg": sg.detach(), "edge_keep": keep.float().mean()}
    else:
        task = build_task(kind, kind, student.shape[1])
        term, parts = had_term(task, student, task.pseudo_label(teacher), cfg)
    return (term, parts) if return_parts else term
