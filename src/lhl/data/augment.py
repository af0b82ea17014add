"""GPU-side augmentation of a dense multi-task batch (kornia), applied after the batch is on device.

Random scale-crop as in MTAN's `RandomScaleCrop` (zoom by a scale from `scales`, crop back to the
input size; image bilinear, labels nearest) and a horizontal flip. Each sample gets its own scale,
crop position and flip. What a zoom or a flip does to a label's values (depth scales, normals'
x negates) is its task type's (`TaskSpec.zoom_label` / `flip_label`), given the dataset's
`LabelFacts`, which `DenseAugment.for_dataset` reads.
"""
from __future__ import annotations

from typing import Dict, Mapping, Optional, Sequence

import torch
from kornia.geometry.transform import crop_and_resize
from torch import Tensor

from lhl.tasks.base import LabelFacts, TaskSpec


def _resample(label: Tensor, boxes: Tensor, size) -> Tensor:
    """Nearest-neighbour crop-and-resize of a label in its own format ([B, H, W] or [B, C, H, W])."""
    squeeze = label.dim() == 3
    y = label.unsqueeze(1) if squeeze else label
    y = crop_and_resize(y.float(), boxes, size, mode="nearest", align_corners=True)
    y = y.to(label.dtype) if label.dtype.is_floating_point else y.round().to(label.dtype)
    return y.squeeze(1) if squeeze else y


class DenseAugment:
    """Consistent random scale-crop + flip over the image and every label of a batch."""

    def __init__(
        self, specs: Mapping[str, TaskSpec], scales: Sequence[float] = (1.0, 1.2, 1.5), flip: bool = True,
        facts: Optional[LabelFacts] = None,
    ):
        self.specs = dict(specs)
        self.scales = torch.tensor(list(scales), dtype=torch.float32)
        self.flip = flip
        self.facts = facts or LabelFacts()

    @property
    def normal_x(self) -> int:
        """The stored normal channel a flip negates."""
        return self.facts.normal_x_channel

    @classmethod
    def for_dataset(cls, data_cfg, specs: Mapping[str, TaskSpec], **kwargs) -> "DenseAugment":
        """The augmentation for `data_cfg`'s dataset: normals' x channel from `data.normal_x_channel`
        or the dataset class's `NORMAL_X_CHANNEL`; depth multiplied on zoom if its `DEPTH_IS_INVERSE`."""
        from lhl.data.sources import DATASETS

        dataset = DATASETS.get(data_cfg.dataset)
        x = data_cfg.get("normal_x_channel")
        if x is None:
            x = getattr(dataset, "NORMAL_X_CHANNEL", None)
        if x is None and any("normal_x_channel" in s.uses_facts for s in specs.values()):
            raise ValueError(
                f"data.augment: dataset '{data_cfg.dataset}' does not say which normal channel is x "
                "(no NORMAL_X_CHANNEL); set data.normal_x_channel or data.augment=false"
            )
        facts = LabelFacts(normal_x_channel=0 if x is None else int(x),
                           depth_inverse=bool(getattr(dataset, "DEPTH_IS_INVERSE", False)))
        return cls(specs, facts=facts, **kwargs)

    def _boxes(self, b: int, h: int, w: int, device) -> tuple:
        idx = torch.randint(len(self.scales), (b,), device=device)
        sc = self.scales.to(device)[idx]
        ch, cw = h / sc, w / sc
        y0 = torch.rand(b, device=device) * (h - ch)
        x0 = torch.rand(b, device=device) * (w - cw)
        x1, y1 = x0 + cw - 1, y0 + ch - 1
        boxes = torch.stack(
            [torch.stack([x0, y0], -1), torch.stack([x1, y0], -1),
             torch.stack([x1, y1], -1), torch.stack([x0, y1], -1)], dim=1,
        )
        return boxes, sc

    def __call__(self, batch: Dict[str, Tensor]) -> Dict[str, Tensor]:
        image = batch["image"]
        b, _, h, w = image.shape
        boxes, sc = self._boxes(b, h, w, image.device)
        out = dict(batch)
        out["image"] = crop_and_resize(image, boxes, (h, w), mode="bilinear", align_corners=True)
        flip = torch.rand(b, device=image.device) < 0.5 if self.flip else None
        if flip is not None:
            out["image"] = torch.where(flip[:, None, None, None], out["image"].flip(-1), out["image"])
        for name, spec in self.specs.items():
            if name not in batch:
                continue
            y = spec.zoom_label(_resample(batch[name], boxes, (h, w)), sc, self.facts)
            out[name] = spec.flip_label(y, flip, self.facts) if flip is not None else y
        return out
