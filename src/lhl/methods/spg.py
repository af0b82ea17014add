"""spg: soft-masking of parameter-level gradient flow (Konishi et al., ICML 2023), on the shared
backbone of a heterogeneous dense predictor.

At each phase end, for every task seen, the gradient over the phase's data of that task's signal:
the current task's supervised loss; an old task's sum of its head's raw (pre-activation) outputs,
read with `network.heads[t](feat)` (no labels of old tasks exist in the phase). Per tensor,
γ = |tanh(standardise(g))| (standardise: (g − mean) / std over the tensor's elements); the phase's
mask is the max over tasks, and the accumulated mask `a` the max over phases. Later phases train
the backbone (every parameter, BatchNorm affine included) with its change multiplied by (1 − a) and
the new head with (1 − mean a), mean over all backbone elements.

`mask: update` (default) scales the optimiser's update after the step: under Adam a constant
per-coordinate gradient scale cancels (m/√v is invariant), so masking the gradient would do nothing
there. `mask: gradient` scales the gradient before the step, SPG's original form (plain SGD).
Gradients are one per batch of the global batch under DDP (`gradient_statistic`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional

import torch
from torch import Tensor, nn

from lhl.core.registry import METHODS
from lhl.data.protocol import Phase
from lhl.methods.base import Method, MethodOptions
from lhl.methods.shared.quadratic import gradient_statistic
from lhl.methods.shared.update_edit import UpdateEditor


@dataclass
class SPGOptions(MethodOptions):
    """SPG's options.

    mask: 'update' (any optimiser, Adam included) or 'gradient' (plain SGD, as the original).
    batches: most batches of the phase's loader for the importance gradients (None = all).
    """

    mask: str = "update"
    batches: Optional[int] = None

    def __post_init__(self):
        if self.mask not in ("update", "gradient"):
            raise ValueError(f"method.mask must be 'update' or 'gradient', got {self.mask!r}")


def soft_mask(g: Tensor) -> Tensor:
    """γ = |tanh((g − mean g) / std g)| over one tensor (0 for a constant or one-element tensor)."""
    g = g.double()
    if g.numel() < 2:
        return torch.zeros_like(g)
    std = g.std()
    if not bool(std > 0):
        return torch.zeros_like(g)
    return torch.tanh((g - g.mean()) / std).abs()


def task_signal(tasks, name: str, supervised: bool):
    """The objective whose gradient measures a task's use of each parameter: its supervised loss
    (labels present) or the sum of its head's raw outputs."""

    def objective(network: nn.Module, batch: Dict[str, Tensor]) -> Tensor:
        if supervised:
            return tasks[name].loss(network(batch["image"], [name])[name], batch[name])
        return network.heads[name](network.backbone(batch["image"])).sum()

    return objective


@METHODS.register("spg")
class SPG(Method):
    Options = SPGOptions
    upgrade_refusal = ("its soft masks are per parameter of the old network, and the upgraded "
                       "network has other parameters")

    def __init__(self, options, tasks):
        super().__init__(options, tasks)
        self.accumulated: Dict[str, Tensor] = {}
        self._editor = UpdateEditor()
        self._masked: Dict[str, nn.Parameter] = {}
        self._heads: Dict[str, nn.Parameter] = {}
        self._head_scale = 1.0

    def to(self, device: torch.device) -> None:
        self.accumulated = {n: a.to(device) for n, a in self.accumulated.items()}

    def on_phase_start(self, phase: Phase, network: nn.Module) -> None:
        if phase.fresh_model:
            self.accumulated = {}
        params = dict(network.named_parameters())
        self._masked = {n: params[n] for n in self.accumulated if n in params}
        new = tuple(f"heads.{t}." for t in phase.train_tasks if t not in phase.old_tasks)
        self._heads = {n: p for n, p in params.items() if new and n.startswith(new) and p.requires_grad}
        if self.accumulated:
            total = sum(a.sum() for a in self.accumulated.values())
            count = sum(a.numel() for a in self.accumulated.values())
            self._head_scale = float(1 - total / count)

    def factor(self, name: str) -> Any:
        return 1 - self.accumulated[name] if name in self.accumulated else self._head_scale

    def before_optimizer_step(self, network: nn.Module) -> None:
        if not self.accumulated:
            return
        params = {**self._masked, **self._heads}
        if self.opts.mask == "gradient":
            with torch.no_grad():
                for n, p in params.items():
                    if p.grad is not None:
                        p.grad.mul_(self.factor(n))
        else:
            self._editor.snapshot(params)

    def after_optimizer_step(self, network: nn.Module) -> None:
        if self.accumulated and self.opts.mask == "update":
            self._editor.apply({**self._masked, **self._heads}, lambda n, d: d * self.factor(n))

    def importance(self, phase: Phase, network: nn.Module, loader) -> Dict[str, Tensor]:
        """max over the seen tasks of γ per backbone parameter."""
        params = {n: p for n, p in network.named_parameters() if n.startswith("backbone.") and p.requires_grad}
        mask: Dict[str, Tensor] = {}
        for t in phase.seen_tasks:
            grads = gradient_statistic(network, loader, task_signal(self.tasks, t, t in phase.train_tasks),
                                       params, lambda g: g, self.opts.batches)
            for n, g in grads.items():
                gamma = soft_mask(g).to(g.dtype)
                mask[n] = gamma if n not in mask else torch.maximum(mask[n], gamma)
        return mask

    def on_phase_end(self, phase: Phase, network: nn.Module, train_loader) -> None:
        for n, m in self.importance(phase, network, train_loader).items():
            self.accumulated[n] = m if n not in self.accumulated else torch.maximum(self.accumulated[n], m)

    def state_dict(self) -> Dict[str, Any]:
        return {"accumulated": dict(self.accumulated)}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.accumulated = dict(state.get("accumulated", {}))
