"""MultiHeadPredictor: one shared backbone, one head per task, heads added as tasks arrive."""
from __future__ import annotations

from typing import Dict, Iterable, List, Optional, Tuple

from torch import Tensor, nn

from lhl.models.backbone import Backbone, Encoder
from lhl.models.heads import ASPPHead, upsample_to
from lhl.tasks.base import TaskSpec


class MultiHeadPredictor(nn.Module):
    """forward(x, tasks) -> {task: activated prediction at the input size}.

    Heads output at the backbone's stride and are upsampled bilinearly (align_corners=True, as
    released) before the task's activation (semantic log-softmax, normal L2, depth raw).
    """

    def __init__(
        self, backbone: str = "resnet18", pretrained: bool = False, output_stride: int = 8,
        head_width: int = 256, aspp_rates=(12, 24, 36), dropout: float = 0.5, zero_init_last: bool = True,
        timm_kwargs=None,
    ):
        super().__init__()
        self.backbone = Backbone(backbone, pretrained, output_stride, zero_init_last, timm_kwargs)
        self.heads = nn.ModuleDict()
        self.specs: Dict[str, TaskSpec] = {}
        self._head_kwargs = dict(width=head_width, rates=tuple(aspp_rates), dropout=dropout)

    def add_head(self, task: TaskSpec) -> None:
        """Create the head of a newly arrived task (no-op when it exists)."""
        self.specs[task.name] = task
        if task.name not in self.heads:
            self.heads[task.name] = ASPPHead(
                self.backbone.out_channels, task.channels, **self._head_kwargs
            )

    @property
    def task_names(self):
        return list(self.heads.keys())

    @property
    def architecture(self) -> str:
        """The backbone's timm name (what a phase checkpoint records)."""
        return self.backbone.name

    def decode(self, feat: Tensor, tasks: Iterable[str], size) -> Dict[str, Tensor]:
        """Run the named heads on one shared feature map."""
        out = {}
        for name in tasks:
            out[name] = self.specs[name].activate(upsample_to(self.heads[name](feat), size))
        return out

    def forward(self, x: Tensor, tasks: Optional[Iterable[str]] = None) -> Dict[str, Tensor]:
        names = list(self.heads.keys()) if tasks is None else list(tasks)
        return self.decode(self.backbone(x), names, x.shape[-2:])

    def forward_with_features(self, x: Tensor, tasks: Iterable[str]) -> Tuple[Dict[str, Tensor], List[Tensor]]:
        """The same single backbone pass, also returning every encoder stage (NCHW, shallow first):
        the heads read the deepest; feature distillation reads the configured ones."""
        feats = Encoder.forward(self.backbone, x)
        return self.decode(feats[-1], list(tasks), x.shape[-2:]), feats
