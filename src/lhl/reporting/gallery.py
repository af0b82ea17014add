"""Prediction gallery: input, ground truth and prediction of every evaluated task for a few val images."""
from __future__ import annotations

from pathlib import Path
from typing import List

import numpy as np
import torch

from lhl.data.datamodule import build_dataset
from lhl.reporting.plots import save_gallery


@torch.no_grad()
def save_phase_gallery(network, dm, tasks: List[str], n: int, path: Path) -> None:
    ds = build_dataset(dm.cfg, "val", tasks, phases=len(dm.order))
    samples = [ds[i] for i in range(min(n, len(ds)))]
    device = next(network.parameters()).device
    images = torch.stack([s["image"] for s in samples]).to(device)
    was_training = network.training
    network.eval()
    preds = network(images, tasks)
    network.train(was_training)
    rows = []
    for i, s in enumerate(samples):
        img = (s["image"].permute(1, 2, 0).clamp(0, 1).cpu().numpy() * 255).astype(np.uint8)
        row = [("input", img)]
        for t in tasks:
            spec = network.specs[t]
            row.append((f"{t} (gt)", spec.colourise(s[t], is_label=True)))
            row.append((f"{t} (pred)", spec.colourise(preds[t][i].float())))
        rows.append(row)
    save_gallery(rows, path)
