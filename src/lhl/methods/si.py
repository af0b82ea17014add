"""si: synaptic intelligence (Zenke et al. 2017).

During a phase each parameter's contribution to the loss decrease is integrated along the
optimiser's path, ω_i += -g_i · Δθ_i after every step (g = the gradient the step followed, read
from `.grad`). At phase end Ω_i += max(ω_i, 0) / ((θ_i^end - θ_i^start)² + ξ) and the weights
become the anchor; later phases pay `c · Σ Ω_i (θ_i - θ*_i)²`. Label-free in its importance, so it
works for every task type; the head being learned is not penalised (its Ω only exists once its
phase has ended).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict

import torch
from torch import Tensor, nn

from lhl.methods.shared.quadratic import (
    QuadraticRegulariser, RegulariserOptions, regularised_parameters, snapshot,
)
from lhl.data.protocol import Phase
from lhl.core.registry import METHODS
from lhl.methods.base import Knob


@dataclass
class SIOptions(RegulariserOptions):
    """SI's options.

    c: penalty weight (Zenke et al. swept 0.01–1 on CIFAR; per-pixel mean losses are O(1) like
      classification losses, so the same range applies; 1.0 is its top).
    xi: damping ξ of the denominator (0.1, as in van de Ven & Tolias' benchmark code); it keeps
      Ω bounded for parameters that barely moved.
    """

    c: float = 1.0
    xi: float = 0.1


@METHODS.register("si")
class SI(QuadraticRegulariser):

    stability = Knob("c", (0.0, 0.1, 1.0, 10.0, 100.0))
    Options = SIOptions
    term_name = "si"

    def __init__(self, options, tasks):
        super().__init__(options, tasks)
        self.start: Dict[str, Tensor] = {}
        self.previous: Dict[str, Tensor] = {}
        self.omega: Dict[str, Tensor] = {}

    @property
    def scale(self) -> float:
        return self.opts.c

    def _tracked(self, network: nn.Module) -> Dict[str, nn.Parameter]:
        """Backbone and every head present (the current head joins Ω when its phase ends)."""
        return regularised_parameters(network, network.heads.keys())

    def _reset(self, network: nn.Module) -> None:
        """Start a new path integral at the current weights."""
        params = self._tracked(network)
        self.start = snapshot(params)
        self.previous = snapshot(params)
        self.omega = {n: torch.zeros_like(p) for n, p in self.start.items()}

    def on_phase_start(self, phase: Phase, network: nn.Module) -> None:
        """A new path integral, unless one restored from a mid-phase checkpoint (a requeued job)
        is already running over the same parameters: `on_phase_end` empties ω, so a non-empty ω
        here can only come from such a checkpoint."""
        if not self.omega or set(self.omega) != set(self._tracked(network)):
            self._reset(network)

    def to(self, device: torch.device) -> None:
        super().to(device)
        for store in (self.start, self.previous, self.omega):
            store.update({n: t.to(device) for n, t in store.items()})

    @torch.no_grad()
    def after_optimizer_step(self, network: nn.Module) -> None:
        """Add -g · Δθ of the step just taken to ω (parameters without a gradient only move on)."""
        params = self._tracked(network)
        if set(params) != set(self.previous):
            self._reset(network)
            return
        for n, p in params.items():
            if p.grad is not None:
                # a step skipped by the fp16 grad scaler has inf gradients and Δθ = 0: inf·0 = NaN
                self.omega[n].sub_(torch.nan_to_num(p.grad * (p - self.previous[n]), nan=0.0, posinf=0.0, neginf=0.0))
            self.previous[n].copy_(p)

    @torch.no_grad()
    def path_importance(self, network: nn.Module) -> Dict[str, Tensor]:
        """Ω_t = max(ω, 0) / (Δ² + ξ) for the phase that just ended."""
        params = self._tracked(network)
        return {
            n: self.omega[n].clamp_min(0) / ((params[n] - self.start[n]).pow(2) + self.opts.xi)
            for n in self.omega
        }

    def on_phase_end(self, phase: Phase, network: nn.Module, train_loader) -> None:
        self.consolidate(self.path_importance(network), network)
        self.start, self.previous, self.omega = {}, {}, {}

    def state_dict(self) -> Dict[str, Any]:
        state = super().state_dict()
        state.update(start=dict(self.start), previous=dict(self.previous), omega=dict(self.omega))
        return state

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.start = {n: t.clone() for n, t in state.get("start", {}).items()}
        self.previous = {n: t.clone() for n, t in state.get("previous", {}).items()}
        self.omega = {n: t.clone() for n, t in state.get("omega", {}).items()}
