"""ewc: elastic weight consolidation (Kirkpatrick et al. 2017; online form: Schwarz et al. 2018).

At the end of each phase the diagonal empirical Fisher of that phase's supervised loss (its own
labels, its own task types) is estimated over the backbone and the phase's heads; later phases
pay `lambda/2 · Σ F_i (θ_i - θ*_i)²`. The head being learned is never penalised.
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
class EWCOptions(RegulariserOptions):
    """EWC's options.

    lambda_: penalty weight λ (`lambda` is a Python keyword, hence the underscore). The Fisher
      here is per batch (the squared gradient of the batch-mean loss): near a minimum about 1/B
      of the per-sample empirical Fisher, at B times less cost on dense tasks. 1e3 at the
      release's batch of 64 matches a per-sample λ ≈ 16, inside the 1–100 range used on
      classification benchmarks (Mammoth, Avalanche); the losses are per-pixel means, O(1) like
      classification losses. Sweep it for a new sequence.
    online: one Fisher accumulated as F ← gamma·F + F_t with the latest anchor (online EWC);
      False keeps one (Fisher, anchor) pair per phase, the original formulation.
    gamma: decay of the old Fisher in online mode (1.0 = plain sum).
    fisher_batches: most batches of the phase's train loader used for the Fisher (None = all).
    """

    lambda_: float = 1e3
    online: bool = False
    gamma: float = 1.0
    fisher_batches: Optional[int] = None


def supervised_objective(tasks, names):
    """The summed supervised loss of the named tasks present in a batch (the Fisher's objective)."""

    def objective(network: nn.Module, batch: Dict[str, Tensor]) -> Tensor:
        present = [t for t in names if t in batch]
        preds = network(batch["image"], tasks=present)
        losses = [tasks[t].loss(preds[t], batch[t]) for t in present]
        return sum(losses[1:], losses[0])

    return objective


@METHODS.register("ewc")
class EWC(QuadraticRegulariser):

    stability = Knob("lambda", (0.0, 10.0, 100.0, 1000.0, 10000.0))
    Options = EWCOptions
    term_name = "ewc"

    @property
    def scale(self) -> float:
        return 0.5 * self.opts.lambda_

    def fisher(self, phase: Phase, network: nn.Module, loader) -> Dict[str, Tensor]:
        """Diagonal empirical Fisher: mean over batches of the squared batch-loss gradient."""
        return gradient_statistic(
            network, loader, supervised_objective(self.tasks, phase.train_tasks),
            regularised_parameters(network, phase.train_tasks), lambda g: g.pow(2),
            self.opts.fisher_batches,
        )

    def on_phase_end(self, phase: Phase, network: nn.Module, train_loader) -> None:
        self.consolidate(
            self.fisher(phase, network, train_loader), network,
            decay=self.opts.gamma, separate=not self.opts.online,
        )

