"""Loss-term diagnostics (`diag.every=N`): what each named loss term does to the shared backbone, for
any method, measured on the training step itself.

On every N-th training step of a phase that the loggers write (a step whose number, counted from 1
in the phase, is a multiple of N; with `train.log_every_n_steps` L the measured steps are the
multiples of both), for each loss term `<term>` of the step (the names under `loss/`):

* `diag/<term>/grad_norm`: the L2 norm of the term's gradient (as weighted in the loss) on the
  backbone's trainable parameters;
* `diag/<term>/cos_new`: the cosine of that gradient with the new task's gradient (the sum of the
  supervised terms of the phase's trained tasks); 0 when either gradient is zero;
* `diag/<term>/worst_decile_share`: for the terms whose method exposes their per-pixel loss map
  (`Method.pixel_loss_maps`: pixel-wise distillation), the share of d term / d map that falls on
  the 10 % valid pixels of highest pixel loss (`lhl.losses.pixel_share`): 0.1 for a plain mean;
* `diag/<term>/edge_keep`: where the method logs `<term>/edge_keep` (HAD), that fraction, beside
  the others.

Cost: one extra backward pass through the backbone per loss term (`torch.autograd.grad` with the
graph retained), and one cheap gradient to each loss map, on the measured steps only; the step's
own backward is unchanged, so training and its results are the same with and without them. Off
(`diag.every` null, the default) nothing is computed or kept. Single-process training only (under
DDP the extra gradients are per process).
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import torch
from torch import Tensor, nn

from lhl.data.protocol import Phase
from lhl.losses.pixel_share import worst_share
from lhl.methods.base import Method

#: the share of pixels `worst_decile_share` looks at
WORST_FRACTION = 0.1


def check_every(every) -> Optional[int]:
    """`diag.every`: null (off) or a positive whole number of steps."""
    if every is None:
        return None
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise ValueError(f"diag.every must be a positive number of training steps or null (off), got {every!r}")
    return every


class LossTermDiagnostics:
    """Measures the loss terms of a training step every `every` steps (None: never)."""

    def __init__(self, every: Optional[int] = None):
        self.every = check_every(every)

    def due(self, method: Method, step_in_phase: int) -> bool:
        """Whether the step about to run (0-based `step_in_phase`) is measured; tells the method to
        keep its loss maps for exactly those steps."""
        due = self.every is not None and (step_in_phase + 1) % self.every == 0
        if self.every is not None:
            method.record_pixel_maps = due
        return due

    def measure(self, network: nn.Module, method: Method, terms: Dict[str, Tensor],
                diagnostics: Dict[str, Tensor], phase: Phase) -> Dict[str, Tensor]:
        """The `diag/...` values of one step, from its terms (the graph is retained for the step's
        own backward)."""
        params = [p for p in _backbone(network).parameters() if p.requires_grad]
        live = {k: v for k, v in terms.items() if v.requires_grad}
        out: Dict[str, Tensor] = {}
        grads = {k: _flat_grad(v, params) for k, v in live.items()} if params else {}
        new = [grads[t] for t in phase.train_tasks if t in grads]
        g_new = torch.stack(new).sum(dim=0) if new else None
        for name, g in grads.items():
            out[f"diag/{name}/grad_norm"] = g.norm()
            if g_new is not None:
                out[f"diag/{name}/cos_new"] = _cosine(g, g_new)
        for name, (loss_map, valid) in method.pixel_loss_maps().items():
            if name in live and loss_map.requires_grad:
                (g_map,) = torch.autograd.grad(live[name], loss_map, retain_graph=True)
                out[f"diag/{name}/worst_decile_share"] = worst_share(g_map, loss_map, valid, WORST_FRACTION)
        for key, value in diagnostics.items():
            if key.endswith("/edge_keep") and key[: -len("/edge_keep")] in terms:
                out[f"diag/{key}"] = value.detach()
        return {k: v.detach().float() for k, v in out.items()}


def _backbone(network: nn.Module) -> nn.Module:
    """The shared part of the network: its `backbone` (the encoder every head reads), else all of it."""
    return getattr(network, "backbone", network)


def _flat_grad(term: Tensor, params: Sequence[Tensor]) -> Tensor:
    grads: List[Optional[Tensor]] = list(torch.autograd.grad(term, params, retain_graph=True, allow_unused=True))
    return torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1).float() for g, p in zip(grads, params)])


def _cosine(a: Tensor, b: Tensor) -> Tensor:
    a, b = a.double(), b.double()  # float32 puts a gradient's cosine with itself above 1
    den = a.norm() * b.norm()
    return torch.where(den > 0, (a @ b) / den.clamp_min(1e-300), den).clamp(-1.0, 1.0)
