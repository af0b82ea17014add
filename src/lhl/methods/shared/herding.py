"""Exemplar selection by herding (Welling 2009, as in iCaRL, Rebuffi et al. 2017), DDP-exact.

Features are the L2-normalised, globally pooled backbone features of a phase's training images;
herding greedily picks the samples whose running mean stays closest to the mean of all of them, so
any prefix of its order is the best exemplar set of that size (an old task's set shrinks by
truncation). Under DDP every rank gathers every rank's features and dataset indices and runs the
same selection, so all ranks hold the same exemplars.
"""
from __future__ import annotations

import itertools
from typing import Dict, Iterable, List, Optional, Tuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Subset, default_collate

from lhl.core.distributed import rank_and_world
from lhl.methods.shared.quadratic import batch_to, estimation_mode, parameter_device


def herding_order(features: Tensor, count: int) -> Tensor:
    """Positions of `count` rows of `features` [N, D] in herding order (no repeats): the k-th pick
    minimises ||μ − (Σ_{chosen} φ + φ_i) / k||, μ the mean row; ties go to the lowest position."""
    features = features.double()
    mu = features.mean(dim=0)
    chosen: List[int] = []
    running = torch.zeros_like(mu)
    free = torch.ones(features.shape[0], dtype=torch.bool)
    for k in range(1, min(count, features.shape[0]) + 1):
        cost = (mu - (running + features) / k).norm(dim=1)
        cost[~free] = float("inf")
        pick = int(torch.argmin(cost))
        chosen.append(pick)
        free[pick] = False
        running += features[pick]
    return torch.tensor(chosen, dtype=torch.long)


def _gather_rows(x: Tensor) -> Tensor:
    """All ranks' rows of `x`, in rank order (every rank has as many rows: DistributedSampler)."""
    _, world = rank_and_world()
    if world == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(world)]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


@torch.no_grad()
def pooled_features(
    network: nn.Module, loader: Iterable[Dict[str, Tensor]], max_batches: Optional[int] = None,
) -> Tuple[Tensor, Tensor]:
    """(features [N, C] L2-normalised and pooled, dataset indices [N]) of the whole (global) set,
    sorted by dataset index with duplicates (a DistributedSampler's padding) dropped; on CPU."""
    device = parameter_device(network)
    feats, idx = [], []
    with estimation_mode(network):
        for batch in itertools.islice(loader, max_batches):
            batch = batch_to(batch, device)
            f = F.normalize(network.backbone(batch["image"]).float().mean(dim=(2, 3)), dim=1)
            feats.append(_gather_rows(f).cpu())
            idx.append(_gather_rows(batch["index"].long()).cpu())
    features, indices = torch.cat(feats), torch.cat(idx)
    order = torch.argsort(indices, stable=True)
    features, indices = features[order], indices[order]
    keep = torch.ones_like(indices, dtype=torch.bool)
    keep[1:] = indices[1:] != indices[:-1]
    return features[keep], indices[keep]


def load_samples(loader, indices: Tensor) -> Dict[str, Tensor]:
    """The loader's samples with these dataset indices, collated (read from its dataset)."""
    dataset = loader.dataset
    full = dataset.dataset if isinstance(dataset, Subset) else dataset
    return default_collate([full[int(i)] for i in indices])
