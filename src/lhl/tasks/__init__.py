"""Task types. Importing this package registers every built-in task type."""
from lhl.core.registry import TASKS
from lhl.tasks import depth, normal, scalar, semantic  # noqa: F401  (registration)
from lhl.tasks.base import LabelFacts, TaskSpec


def build_task(kind: str, name: str, channels: int) -> TaskSpec:
    return TASKS.get(kind)(name=name, channels=channels)


__all__ = ["LabelFacts", "TaskSpec", "build_task", "TASKS"]
