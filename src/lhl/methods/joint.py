"""joint: the upper bound. One phase, every task, the whole train set, every label."""
from typing import List

from lhl.core.registry import METHODS
from lhl.data.protocol import PhaseRequest
from lhl.methods.base import Method


@METHODS.register("joint")
class Joint(Method):
    upgrade_refusal = "it trains every task in one phase, so there is no phase boundary to upgrade at"

    def plan(self, order: List[str]) -> List[PhaseRequest]:
        return [PhaseRequest(tasks=tuple(order), slice=None)]
