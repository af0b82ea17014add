"""Shared machinery of the parameter-space regularisers (EWC, SI, MAS).

Which parameters count: the shared backbone; the heads of learned tasks only with
`anchor_heads: true`. In these methods nothing but the penalty reaches an old head, so its gradient
stays None and the optimiser leaves it exactly as learned; anchoring it adds nothing under plain
gradient descent and harms under Adam with (coupled) weight decay: the decay term is its only
gradient, Adam rescales it into lr-sized steps and the penalty pulls back, so the head jitters by
about lr per step (on synthetic_small_s1, EWC seed 1: depth error after the last phase 1.92 with the
heads anchored, 1.33 with weight decay off, 1.30 with the heads left alone). The head being learned
is never anchored.
Penalties have the form `scale * sum_i Ω_i (θ_i - θ*_i)²` over named parameters (names as in
`network.named_parameters()`).
"""
from __future__ import annotations

import contextlib
import itertools
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple

import torch
import torch.distributed as dist
from torch import Tensor, nn

from lhl.core.distributed import rank_and_world
from lhl.methods.base import Method, MethodOptions, Step, Terms

Named = Dict[str, Tensor]


@dataclass
class RegulariserOptions(MethodOptions):
    """Options shared by EWC, SI and MAS.

    anchor_heads: also penalise the heads of learned tasks (off: they keep no gradient and stay
      exactly as learned; see the module docstring for why anchoring them hurts under Adam).
    """

    anchor_heads: bool = False


def parameter_device(network: nn.Module) -> torch.device:
    """The device of the network's parameters (where importances and anchors live)."""
    return next(network.parameters()).device


def batch_to(batch: Dict[str, Any], device: torch.device) -> Dict[str, Any]:
    """Move every tensor of a batch dict to `device` (loaders yield CPU batches)."""
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


def regularised_parameters(network: nn.Module, tasks: Iterable[str]) -> Dict[str, nn.Parameter]:
    """The backbone's and the named tasks' heads' trainable parameters, by full name."""
    prefixes = ("backbone.",) + tuple(f"heads.{t}." for t in tasks)
    return {
        n: p for n, p in network.named_parameters() if p.requires_grad and n.startswith(prefixes)
    }


def snapshot(params: Dict[str, Tensor]) -> Named:
    """Detached copies of the parameters: the anchor θ* of a quadratic penalty."""
    return {n: p.detach().clone() for n, p in params.items()}


def quadratic_penalty(params: Dict[str, Tensor], importance: Named, anchor: Named) -> Tensor:
    """sum_i Ω_i (θ_i - θ*_i)² over the names of `importance` (a missing parameter is an error)."""
    terms = [(importance[n] * (params[n] - anchor[n]).pow(2)).sum() for n in importance]
    if not terms:
        return next(iter(params.values())).new_zeros(())
    return torch.stack(terms).sum()


@contextlib.contextmanager
def estimation_mode(network: nn.Module) -> Iterator[None]:
    """Eval mode (BatchNorm running statistics are used and left untouched, no dropout) with
    gradients enabled; every module's training flag is restored on exit, and requires_grad and
    `.grad` are never touched (gradients are taken with `torch.autograd.grad`)."""
    flags = [(m, m.training) for m in network.modules()]
    network.eval()
    try:
        with torch.inference_mode(False), torch.enable_grad():
            yield
    finally:
        for module, training in flags:
            module.training = training


def global_batch_gradients(grads: List[Optional[Tensor]], like: List[Tensor]) -> List[Tensor]:
    """Under DDP, the gradient of the global batch's mean loss: the mean of the ranks' local
    gradients, in one flat all-reduce. Squaring (EWC) or taking |g| (MAS) only after this keeps the
    importances independent of how many processes share a batch."""
    grads = [torch.zeros_like(p) if g is None else g.detach() for g, p in zip(grads, like)]
    _, world = rank_and_world()
    if world > 1:
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat.div_(world)
        grads = [t.view_as(g) for t, g in zip(flat.split([g.numel() for g in grads]), grads)]
    return grads


def gradient_statistic(
    network: nn.Module,
    loader: Iterable[Dict[str, Tensor]],
    objective: Callable[[nn.Module, Dict[str, Tensor]], Tensor],
    params: Dict[str, nn.Parameter],
    transform: Callable[[Tensor], Tensor],
    max_batches: Optional[int] = None,
) -> Named:
    """Mean over batches of `transform(∂ objective(batch) / ∂θ)` for every named parameter.

    One gradient per batch (not per sample): on dense tasks a per-sample pass costs B backward
    passes for little gain. Under DDP the batch is the global one (the ranks' gradients are
    averaged before `transform`, so every rank ends with the same, world-size-independent
    statistic; the loader must give every rank the same number of batches, as a
    DistributedSampler does). Runs in `estimation_mode`; batches go to the parameters' device.
    """
    names = list(params)
    if not names:
        return {}
    tensors = [params[n] for n in names]
    device = parameter_device(network)
    totals = [torch.zeros_like(p) for p in tensors]
    count = 0
    with estimation_mode(network):
        for batch in itertools.islice(loader, max_batches):
            value = objective(network, batch_to(batch, device))
            grads = torch.autograd.grad(value, tensors, allow_unused=True)
            for total, g in zip(totals, global_batch_gradients(list(grads), tensors)):
                total.add_(transform(g))
            count += 1
    return {n: t / max(count, 1) for n, t in zip(names, totals)}


class QuadraticRegulariser(Method):
    """A method whose extra loss is `scale * Σ_terms Σ_i Ω_i (θ_i - θ*_i)²`.

    `terms` is a list of {"importance": Named, "anchor": Named}; accumulating methods keep one
    term, EWC in its original (not online) form keeps one per finished phase. The loss term is
    named `<term_name>` (logged as `loss/<term_name>`, as added to the loss).
    """

    term_name: str = "penalty"
    upgrade_refusal = (
        "its importances and anchors are per parameter of the old network, and the upgraded "
        "network has other parameters"
    )

    def __init__(self, options, tasks):
        super().__init__(options, tasks)
        self.terms: List[Dict[str, Named]] = []

    @property
    def scale(self) -> float:
        raise NotImplementedError

    def to(self, device: torch.device) -> None:
        """Importances and anchors live on the training device for the whole phase."""
        self.terms = [{k: {n: t.to(device) for n, t in d.items()} for k, d in term.items()} for term in self.terms]

    def penalty(self, network: nn.Module) -> Tensor:
        """The unscaled quadratic penalty of the current weights against every stored anchor."""
        params = dict(network.named_parameters())
        total = next(iter(params.values())).new_zeros(())
        for term in self.terms:
            total = total + quadratic_penalty(params, term["importance"], term["anchor"])
        return total

    def loss_terms(self, step: Step) -> Tuple[Terms, Terms]:
        """The supervised terms plus `scale` x the penalty, once anything is anchored."""
        terms = self.supervised_terms(step)
        if self.terms:
            terms[self.term_name] = self.scale * self.penalty(step.network)
        return terms, {}

    def consolidate(
        self, importance: Named, network: nn.Module, decay: float = 1.0, separate: bool = False
    ) -> None:
        """Store new importances anchored at the current weights.

        separate: append a new term (original EWC). Otherwise merge into one term:
        Ω ← decay·Ω_old + Ω_new over the union of names, anchor ← current weights.
        """
        params = dict(network.named_parameters())
        if not getattr(self.opts, "anchor_heads", True):
            importance = {n: t for n, t in importance.items() if not n.startswith("heads.")}
        if separate or not self.terms:
            names = list(importance)
            self.terms.append(
                {"importance": dict(importance), "anchor": snapshot({n: params[n] for n in names})}
            )
            return
        old = self.terms[0]["importance"]
        merged = {n: decay * t.to(parameter_device(network)) for n, t in old.items()}
        for n, t in importance.items():
            merged[n] = merged[n] + t if n in merged else t.clone()
        self.terms = [{"importance": merged, "anchor": snapshot({n: params[n] for n in merged})}]

    def state_dict(self) -> Dict[str, Any]:
        return {"terms": [{k: dict(v) for k, v in term.items()} for term in self.terms]}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.terms = [{k: dict(v) for k, v in term.items()} for term in state.get("terms", [])]
