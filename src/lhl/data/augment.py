"""GPU-side augmentation of a dense multi-task batch (kornia), applied after the batch is on device.

Random scale-crop as in MTAN's `RandomScaleCrop` (zoom by a scale from `scales`, crop back to the
input size; image bilinear, labels nearest, depth divided by the scale since zooming in brings the
scene closer, or multiplied for inverse depth / disparity) and a horizontal flip that also negates
the normals' x component. Each sample gets its own scale, crop position and flip. Which channel is
x and whether depth is inverse are properties of the dataset: `DenseAugment.for_dataset` reads them.
"""
from __future__ import annotations

from typing import Dict, Sequence

import torch
from kornia.geometry.transform import crop_and_resize
from torch import Tensor


class DenseAugment:
    """Consistent random scale-crop + flip over the image and every label of a batch."""

    def __init__(
        self, kinds: Dict[str, str], scales: Sequence[float] = (1.0, 1.2, 1.5), flip: bool = True,
        normal_x_channel: int = 2, depth_inverse: bool = False,
    ):
        self.kinds = dict(kinds)
        self.scales = torch.tensor(list(scales), dtype=torch.float32)
        self.flip = flip
        self.normal_x = normal_x_channel
        self.depth_inverse = depth_inverse

    @classmethod
    def for_dataset(cls, data_cfg, kinds: Dict[str, str], **kwargs) -> "DenseAugment":
        """The augmentation for `data_cfg`'s dataset: normals' x channel from `data.normal_x_channel`
        or the dataset class's `NORMAL_X_CHANNEL`; depth multiplied on zoom if its `DEPTH_IS_INVERSE`."""
        from lhl.data.sources import DATASETS

        dataset = DATASETS.get(data_cfg.dataset)
        x = data_cfg.get("normal_x_channel")
        if x is None:
            x = getattr(dataset, "NORMAL_X_CHANNEL", None)
        if x is None and "normal" in kinds.values():
            raise ValueError(
                f"data.augment: dataset '{data_cfg.dataset}' does not say which normal channel is x "
                "(no NORMAL_X_CHANNEL); set data.normal_x_channel or data.augment=false"
            )
        return cls(kinds, normal_x_channel=2 if x is None else int(x),
                   depth_inverse=bool(getattr(dataset, "DEPTH_IS_INVERSE", False)), **kwargs)

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
        for name, kind in self.kinds.items():
            if name not in batch:
                continue
            y = batch[name]
            squeeze = y.dim() == 3
            y = y.unsqueeze(1) if squeeze else y
            dtype = y.dtype
            y = crop_and_resize(y.float(), boxes, (h, w), mode="nearest", align_corners=True)
            if kind == "depth":
                y = y * sc[:, None, None, None] if self.depth_inverse else y / sc[:, None, None, None]
            if flip is not None:
                y = torch.where(flip[:, None, None, None], y.flip(-1), y)
                if kind == "normal":
                    sign = torch.ones(b, y.shape[1], 1, 1, device=y.device)
                    sign[:, self.normal_x] = torch.where(flip, -1.0, 1.0)[:, None, None]
                    y = y * sign
            y = y.round().to(dtype) if not dtype.is_floating_point else y
            out[name] = y.squeeze(1) if squeeze else y
        return out
