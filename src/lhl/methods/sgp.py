"""sgp: scaled gradient projection (Saha & Roy, AAAI 2023; code: github.com/sahagobinda/SGP), on the
shared backbone of a heterogeneous dense predictor.

At each phase end every (ungrouped) convolution of the backbone gets bases of its input-patch
representation up to the energy threshold ε_t = `threshold` + `threshold_step`·t (t = 0, 1, ... the
phase's position) with importances λ = (α+1)s / (αs + max s), α = `scale_coff`; later phases add
bases for the residual energy and raise the old importances (`shared/subspace.py`, from covariances
accumulated by forward hooks over `batches` batches of the phase data, all-reduced under DDP).
Later phases then train with `Δ ← Δ − Δ U Λ Uᵀ` per layer (Δ viewed as [C_out, D]); heads are not
projected (each task has its own). From phase 2 the backbone's BatchNorm layers are frozen (eval
mode, affine parameters unchanged), SGP's frozen 1-D parameters.

`project: update` (default) edits the optimiser's update after the step, which holds under Adam,
whose per-coordinate scaling and coupled weight decay undo a gradient projection (SGP's own Adam
variant projects the update the same way); `project: gradient` projects the gradient before the
step, SGP's original form, exact under plain SGD (`train.optimizer=sgd train.momentum=0`).
The stored bases, their memory and the phase-end time are printed at each phase end.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

import torch
from torch import Tensor, nn

from lhl.core.distributed import rank_and_world
from lhl.core.registry import METHODS
from lhl.data.protocol import Phase
from lhl.methods.base import Knob, Method, MethodOptions
from lhl.methods.shared.subspace import (
    input_covariances, project_out, projectable_convolutions, update_basis,
)
from lhl.methods.shared.update_edit import UpdateEditor


@dataclass
class SGPOptions(MethodOptions):
    """SGP's options (defaults: the paper's / release's CIFAR-100 arguments).

    threshold: energy threshold ε of the first phase (`gpm_eps`, 0.97).
    threshold_step: added to ε per phase (`gpm_eps_inc`, 0.003).
    scale_coff: α of the importance (10).
    batches: phase batches whose patches build the representation (2: ~128 images at the release's
      batch of 64, about SGP's 125 examples; None = the whole phase).
    project: 'update' (any optimiser, Adam included) or 'gradient' (plain SGD, as the original).
    freeze_bn: freeze the backbone's BatchNorm (eval mode and affine parameters) from phase 2.
    """

    threshold: float = 0.97
    threshold_step: float = 0.003
    scale_coff: float = 10.0
    batches: Optional[int] = 2
    project: str = "update"
    freeze_bn: bool = True

    def __post_init__(self):
        if self.project not in ("update", "gradient"):
            raise ValueError(f"method.project must be 'update' or 'gradient', got {self.project!r}")
        if not 0 < self.threshold <= 1:
            raise ValueError(f"method.threshold must be in (0, 1], got {self.threshold}")


def _force_eval(module: nn.Module, inputs) -> None:
    module.training = False


@METHODS.register("sgp")
class SGP(Method):

    stability = Knob("threshold", (0.1, 0.7, 0.9, 0.97, 0.99), space="one_minus_log")
    Options = SGPOptions
    upgrade_refusal = ("its bases are per convolution of the old network's backbone, and the upgraded "
                       "network has other layers")

    def __init__(self, options, tasks):
        super().__init__(options, tasks)
        self.bases: Dict[str, Tensor] = {}
        self.importance: Dict[str, Tensor] = {}
        self.phases_done = 0
        self.report: Dict[str, float] = {}
        self._editor = UpdateEditor()
        self._handles: List[Any] = []
        self._frozen: Dict[str, nn.Parameter] = {}
        self._projected: Dict[str, nn.Parameter] = {}

    def to(self, device: torch.device) -> None:
        self.bases = {n: b.to(device) for n, b in self.bases.items()}
        self.importance = {n: v.to(device) for n, v in self.importance.items()}

    @property
    def active(self) -> bool:
        return bool(self.bases)

    def on_phase_start(self, phase: Phase, network: nn.Module) -> None:
        if phase.fresh_model:
            self.bases, self.importance, self.phases_done = {}, {}, 0
        params = dict(network.named_parameters())
        self._projected = {n: params[n] for n in self.bases if n in params}
        self._frozen = {}
        if self.active and self.opts.freeze_bn:
            for name, m in network.backbone.named_modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    self._handles.append(m.register_forward_pre_hook(_force_eval))
                    m.eval()
            self._frozen = {n: p for n, p in params.items()
                            if n.startswith("backbone.") and p.ndim == 1 and p.requires_grad}

    def before_optimizer_step(self, network: nn.Module) -> None:
        if not self.active:
            return
        if self.opts.project == "gradient":
            with torch.no_grad():
                for n, p in self._projected.items():
                    if p.grad is not None:
                        dtype = p.grad.dtype
                        p.grad.copy_(project_out(p.grad, self.bases[n].to(dtype), self.importance[n].to(dtype)))
            self._editor.snapshot(self._frozen)
        else:
            self._editor.snapshot({**self._projected, **self._frozen})

    def after_optimizer_step(self, network: nn.Module) -> None:
        if not self.active:
            return

        def edit(name: str, delta: Tensor) -> Tensor:
            if name in self._frozen:
                return torch.zeros_like(delta)
            return project_out(delta, self.bases[name].to(delta.dtype), self.importance[name].to(delta.dtype))

        self._editor.apply({**self._projected, **self._frozen}, edit)

    def on_phase_end(self, phase: Phase, network: nn.Module, train_loader) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []
        start = time.perf_counter()
        layers = projectable_convolutions(network.backbone)
        covs = input_covariances(network, train_loader, layers, self.opts.batches)
        threshold = min(1.0, self.opts.threshold + self.opts.threshold_step * self.phases_done)
        for name, cov in covs.items():
            basis, lam = update_basis(
                cov, self.bases.get(name), self.importance.get(name), threshold, self.opts.scale_coff
            )
            self.bases[name], self.importance[name] = basis.float(), lam.float()
        self.phases_done += 1
        stored = sum(b.numel() * b.element_size() + v.numel() * v.element_size()
                     for b, v in zip(self.bases.values(), self.importance.values()))
        self.report = {
            "seconds": time.perf_counter() - start, "stored_bytes": float(stored),
            "covariance_bytes": float(sum(c.numel() * c.element_size() for c in covs.values())),
            "bases": float(sum(b.shape[1] for b in self.bases.values())),
            "dims": float(sum(b.shape[0] for b in self.bases.values())),
        }
        if rank_and_world()[0] == 0:
            r = self.report
            print(f"sgp: phase {phase.index} end: {len(covs)} layers, {int(r['bases'])}/{int(r['dims'])} "
                  f"bases kept, {r['stored_bytes'] / 2**20:.1f} MiB stored, covariances "
                  f"{r['covariance_bytes'] / 2**20:.1f} MiB, {r['seconds']:.1f} s")

    def state_dict(self) -> Dict[str, Any]:
        return {"bases": dict(self.bases), "importance": dict(self.importance),
                "phases_done": self.phases_done, "report": dict(self.report)}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.bases = dict(state.get("bases", {}))
        self.importance = dict(state.get("importance", {}))
        self.phases_done = int(state.get("phases_done", 0))
        self.report = dict(state.get("report", {}))
