"""finetune: the lower bound. Each phase trains on its own task only; nothing protects old tasks."""
from lhl.methods.base import Method
from lhl.core.registry import METHODS


@METHODS.register("finetune")
class Finetune(Method):
    """The base method as it is: current-task supervised loss."""
