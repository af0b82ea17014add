"""single_task: one network per task on the whole train set, the reference for Δ (LibMTL)."""
from typing import List

from lhl.methods.base import Method, Phase
from lhl.core.registry import METHODS


@METHODS.register("single_task")
class SingleTask(Method):
    def plan(self, order: List[str]) -> List[Phase]:
        return [
            Phase(index=i, tasks=[t], slice=None, fresh_model=True, eval_tasks=[t])
            for i, t in enumerate(order)
        ]
