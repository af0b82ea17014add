"""Scaled gradient projection's subspaces (SGP: Saha & Roy, AAAI 2023; GPM: Saha et al., ICLR 2021).

For a convolution with weight [C_out, C_in, k, k] the gradient lies in the span of its input patches
(the representation matrix R, D = C_in·k·k rows, one column per patch and image). SGP keeps an
orthonormal basis U of R's dominant left singular vectors with importances λ ∈ (0, 1] and trains
later tasks with `g ← g − g U diag(λ) Uᵀ` (g viewed as [C_out, D]).

R is never built: `input_covariances` accumulates C = R Rᵀ from forward hooks (`F.unfold` with the
layer's kernel, stride, padding and dilation; products in fp32 outside autocast, summed in fp64),
and `update_basis` works on C alone: R's left singular vectors and squared singular values are C's
eigenvectors and eigenvalues; the projected matrix (I − UUᵀ)R has covariance (I − UUᵀ) C (I − UUᵀ);
the energy of R along an old basis vector u, the norm of Uᵀ(UUᵀR) column by column in SGP, is
sqrt(uᵀ C u). Under DDP the covariances are all-reduced (summed) before any eigendecomposition.
"""
from __future__ import annotations

import itertools
from typing import Dict, Iterable, Optional, Tuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from lhl.core.distributed import rank_and_world
from lhl.methods.shared.quadratic import batch_to, estimation_mode, parameter_device

#: elements of an unfolded chunk (samples x D x L) before the batch is split
_CHUNK = 1 << 24


def projectable_convolutions(module: nn.Module, prefix: str = "backbone.") -> Dict[str, nn.Conv2d]:
    """The module's ungrouped Conv2d layers by their weight's full parameter name (grouped or
    depthwise convolutions are left out: one D x D projection does not describe them)."""
    return {
        f"{prefix}{n}.weight": m for n, m in module.named_modules()
        if isinstance(m, nn.Conv2d) and m.groups == 1 and m.weight.requires_grad
    }


def patch_covariance(conv: nn.Conv2d, x: Tensor) -> Tensor:
    """Σ over images and positions of p pᵀ, p the layer's input patches (fp32 products, fp64 sum)."""
    x = x.detach().float()
    total = x.new_zeros((conv.weight[0].numel(),) * 2, dtype=torch.float64)
    per_image = conv.weight[0].numel() * max(1, x.shape[-2] * x.shape[-1] // (conv.stride[0] * conv.stride[1]))
    step = max(1, _CHUNK // per_image)
    for lo in range(0, x.shape[0], step):
        cols = F.unfold(x[lo:lo + step], conv.kernel_size, conv.dilation, conv.padding, conv.stride)
        cols = cols.transpose(0, 1).reshape(cols.shape[1], -1)  # [D, B·L]
        total += (cols @ cols.T).double()
    return total


@torch.no_grad()
def input_covariances(
    network: nn.Module, loader: Iterable[Dict[str, Tensor]], layers: Dict[str, nn.Conv2d],
    max_batches: Optional[int] = None,
) -> Dict[str, Tensor]:
    """C = R Rᵀ per layer over (at most `max_batches` of) the loader, the backbone in eval mode;
    summed over the DDP ranks."""
    device = parameter_device(network)
    covs = {n: None for n in layers}

    def hook(name, conv):
        def fn(module, inputs, output):
            with torch.autocast(device_type=device.type, enabled=False):
                c = patch_covariance(conv, inputs[0])
            covs[name] = c if covs[name] is None else covs[name] + c
        return fn

    handles = [m.register_forward_hook(hook(n, m)) for n, m in layers.items()]
    try:
        with estimation_mode(network):
            for batch in itertools.islice(loader, max_batches):
                network.backbone(batch_to(batch, device)["image"])
    finally:
        for h in handles:
            h.remove()
    _, world = rank_and_world()
    out = {}
    for n, c in covs.items():
        if c is None:
            continue
        if world > 1:
            dist.all_reduce(c)
        out[n] = c
    return out


def scaled_importance(s: Tensor, alpha: float) -> Tensor:
    """SGP's Eq. 2: λ = (α+1)s / (αs + max s) for singular values s (0 where all are 0)."""
    top = s.max() if s.numel() else s.new_zeros(())
    return torch.where(top > 0, (alpha + 1) * s / (alpha * s + top).clamp_min(1e-300), torch.zeros_like(s))


def _eig_desc(c: Tensor) -> Tuple[Tensor, Tensor]:
    """Eigenvalues (descending, ≥ 0) and eigenvectors of a PSD matrix. LAPACK's divide and conquer
    can fail to converge on a highly rank-deficient C (fewer patches than D, post-ReLU inputs):
    then a jitter of 1e-10·trace/D on the diagonal separates the repeated zeros and is taken off
    the eigenvalues again (far below any energy the threshold resolves). On the CPU it runs on one
    thread: MKL's threaded solver stalls on such spectra (D = 1728 from 8 patches: 21 s on two
    threads, 1 s on one, on a shared 2-core machine)."""
    threads = torch.get_num_threads()
    if c.device.type == "cpu":  # see the docstring: one thread is the fast and robust choice
        torch.set_num_threads(1)
    try:
        values, vectors = torch.linalg.eigh(c)
    except torch.linalg.LinAlgError:
        jitter = 1e-10 * float(torch.trace(c)) / c.shape[0] + 1e-300
        values, vectors = torch.linalg.eigh(c + jitter * torch.eye(c.shape[0], dtype=c.dtype, device=c.device))
        values = values - jitter
    finally:
        torch.set_num_threads(threads)
    return values.flip(0).clamp_min(0), vectors.flip(1)


def update_basis(
    cov: Tensor, basis: Optional[Tensor], importance: Optional[Tensor], threshold: float, alpha: float,
) -> Tuple[Tensor, Tensor]:
    """SGP's `update_SGP` for one layer, from C = R Rᵀ (fp64): (basis [D, r], importance [r])."""
    cov = cov.double()
    total = torch.trace(cov).clamp_min(1e-300)
    if basis is None or basis.shape[1] == 0:
        energy, vectors = _eig_desc(cov)
        r = int((torch.cumsum(energy, 0) / total < threshold).sum())
        return vectors[:, :r].clone(), scaled_importance(energy[:r].sqrt(), alpha)
    basis, importance = basis.double(), importance.double()
    old = basis.shape[1]
    cu = cov @ basis  # C U: everything below costs O(D² r), never a D x D x D product
    on_old = (basis * cu).sum(dim=0).clamp_min(0).sqrt()  # sqrt(uᵀ C u)
    ucu = basis.T @ cu
    # (I − UUᵀ) C (I − UUᵀ) = C − U(CU)ᵀ − (CU)Uᵀ + U(UᵀCU)Uᵀ
    hat = cov - basis @ cu.T - cu @ basis.T + basis @ ucu @ basis.T
    energy, vectors = _eig_desc((hat + hat.T) / 2)
    accumulated = float((total - energy.sum()) / total)
    r = 0
    for e in (energy / total).tolist():
        if accumulated >= threshold:
            break
        accumulated += e
        r += 1
    s = torch.cat([on_old, energy[:r].sqrt()])
    lam = scaled_importance(s, alpha)
    lam[:old] = (lam[:old] + importance).clamp(0, 1)
    basis = torch.cat([basis, vectors[:, :r]], dim=1)[:, : cov.shape[0]]
    return basis, lam[: basis.shape[1]]


def project_out(x: Tensor, basis: Tensor, importance: Tensor) -> Tensor:
    """x − x U diag(λ) Uᵀ with x viewed as [C_out, D] (a gradient or an update), in x's shape."""
    flat = x.reshape(x.shape[0], -1)
    return (flat - ((flat @ basis) * importance) @ basis.T).reshape(x.shape)
