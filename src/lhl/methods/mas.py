"""mas: memory-aware synapses (Aljundi et al. 2018).

Importance is the sensitivity of the squared L2 norm of the heads' output, label-free, so every
task type fits. The norm is taken on the raw head output (before the task's activation): unit
normals have norm 1 whatever the weights, and log-softmax would mix in the partition function.
Importances accumulate over phases (Ω ← Ω + Ω_t); later phases pay `lambda · Σ Ω_i (θ_i - θ*_i)²`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional

from torch import Tensor, nn

from lhl.methods.shared.quadratic import (
    QuadraticRegulariser, RegulariserOptions, gradient_statistic, regularised_parameters,
)
from lhl.data.protocol import Phase
from lhl.core.registry import METHODS
from lhl.methods.base import Knob


@dataclass
class MASOptions(RegulariserOptions):
    """MAS's options.

    lambda_: penalty weight λ (1.0 as in the paper's object-recognition experiments; `lambda`
      is a Python keyword, hence the underscore).
    batches: most batches of the phase's train loader used for the importance (None = all).
    """

    lambda_: float = 1.0
    batches: Optional[int] = None


def output_norm_objective(names):
    """Σ over the named heads of the mean over pixels and samples of ||raw output||²₂ (per pixel,
    over channels), one backbone pass, heads at the backbone's stride."""

    def objective(network: nn.Module, batch: Dict[str, Tensor]) -> Tensor:
        feat = network.backbone(batch["image"])
        norms = [network.heads[t](feat).pow(2).sum(dim=1).mean() for t in names]
        return sum(norms[1:], norms[0])

    return objective


@METHODS.register("mas")
class MAS(QuadraticRegulariser):

    stability = Knob("lambda", (0.0, 0.1, 1.0, 10.0, 100.0))
    Options = MASOptions
    term_name = "mas"

    @property
    def scale(self) -> float:
        return self.opts.lambda_

    def importance(self, phase: Phase, network: nn.Module, loader) -> Dict[str, Tensor]:
        """Mean over batches of |∂ mean ||f(x)||² / ∂θ| (one gradient per batch, as for EWC)."""
        return gradient_statistic(
            network, loader, output_norm_objective(phase.train_tasks),
            regularised_parameters(network, phase.train_tasks), lambda g: g.abs(), self.opts.batches,
        )

    def on_phase_end(self, phase: Phase, network: nn.Module, train_loader) -> None:
        self.consolidate(self.importance(phase, network, train_loader), network)
