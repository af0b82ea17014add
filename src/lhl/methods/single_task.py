"""single_task: one network per task on the whole train set, the reference for Δ (LibMTL)."""
from typing import List

from lhl.core.registry import METHODS
from lhl.data.protocol import PhaseRequest
from lhl.methods.base import Method


@METHODS.register("single_task")
class SingleTask(Method):
    upgrade_refusal = "every phase already starts from a new network (set model.backbone instead)"

    def plan(self, order: List[str]) -> List[PhaseRequest]:
        return [PhaseRequest(tasks=(t,), slice=None, fresh_model=True, eval_tasks=(t,)) for t in order]
