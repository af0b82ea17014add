"""The one dispatch between HAD's forms: the release's (`faithful`, and `fixed` with its mends) and
the paper's, for one old task; and `had_loss`, the functional entry point by task kind."""
from __future__ import annotations

from typing import Dict, Optional, Tuple, Union

from torch import Tensor

from lhl.losses.had_paper import PaperConfig, paper_had
from lhl.losses.had_parts import HADConfig
from lhl.losses.had_terms import had_term
from lhl.methods.had.options import HADOptions
from lhl.tasks import build_task
from lhl.tasks.base import TaskSpec

__all__ = ["had_loss", "old_task_had"]


def old_task_had(task: TaskSpec, student: Tensor, target: Tensor, cfg: Union[HADConfig, PaperConfig],
                 maps: Optional[Dict[str, Tensor]] = None) -> Tuple[Tensor, Dict[str, Tensor]]:
    """One old task's HAD term (before the factor `new`) and its detached parts {db, sg,
    edge_keep}: `paper` gives L_db + L_sg against the teacher's output (or its pseudo-label),
    `faithful` / `fixed` the release's (DB + SG) / 2 against the pseudo-label. `maps`, when given,
    receives the term's per-pixel loss map and valid pixels (the loss-term diagnostics)."""
    if isinstance(cfg, PaperConfig):
        term, db, sg, keep = paper_had(task.kind, student, target, cfg, maps)
        return term, {"db": db.detach(), "sg": sg.detach(), "edge_keep": keep.float().mean()}
    return had_term(task, student, target, cfg, maps)


def had_loss(kind: str, student: Tensor, teacher: Tensor, mode: str = "paper", return_parts: bool = False,
             **switches) -> Union[Tensor, Tuple[Tensor, Dict[str, Tensor]]]:
    """L_had,j of one old task, before the weighting, from the student's and the teacher's
    activated outputs (semantic log-probabilities [B, C, H, W], depth [B, 1, H, W], unit normals
    [B, 3, H, W], scalar maps [B, C, H, W]; `paper` also takes a semantic teacher as its argmax).

    Switches by their flat names, checked as the method's options are: scalar_val, num_interval,
    sel_max, any mend (`full_cosine=True`) or ablation switch (`db=False`, `db_weighting="uniform"`).
    `return_parts=True`: (term, {db, sg, edge_keep}), the parts detached."""
    cfg = HADOptions.from_flat(mode, **switches).loss_config()
    task = build_task(kind, kind, student.shape[1])
    target = teacher if isinstance(cfg, PaperConfig) else task.pseudo_label(teacher)
    term, parts = old_task_had(task, student, target, cfg)
    return (term, parts) if return_parts else term
