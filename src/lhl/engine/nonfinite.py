"""A non-finite loss stops the phase, naming the step, the phase and the loss term, before any
checkpoint is written with the weights it produced.

Every training step records on the device (no host-device sync) whether a loss term or the total
is NaN or infinite, and keeps the step, the terms and their values of the *first* such step. The
record is read (one sync) where the run would otherwise go on with damaged weights:

- on the steps the loggers write (the logged values are read from the device there anyway);
- before every mid-phase checkpoint (`last.ckpt`, `requeue.ckpt`): the check raises inside
  `on_save_checkpoint`, before Lightning writes the file, so the previous checkpoint stays;
- at the end of the phase's fit, before the method's end-of-phase estimates and `phase.ckpt`.

The error therefore reports the exact step even when it is found a few steps later; the last good
checkpoints (the phase before's `phase.ckpt`, the phase's last `last.ckpt`) are left in place.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional

import torch
from torch import Tensor

from lhl.runs.folder import RunFolder


class NonFiniteLoss(FloatingPointError):
    """A loss term went NaN or infinite; the message names the step, the phase and the term."""


class NonFiniteWatch:
    """The first non-finite step of a phase, kept as device tensors until `check` reads it."""

    def __init__(self) -> None:
        self._step: Optional[Tensor] = None  # -1 while every loss was finite
        self._bad: Optional[Tensor] = None  # which of `names` were non-finite at that step
        self._values: Optional[Tensor] = None
        self.names: List[str] = []

    def observe(self, terms: Dict[str, Tensor], total: Tensor, step: int) -> None:
        """Record step `step`'s terms and total (device ops only)."""
        names = [f"loss/{k}" for k in terms] + ["loss/total"]
        values = torch.stack([v.detach().float().reshape(()) for v in terms.values()] + [total.detach().float()])
        bad = ~torch.isfinite(values)
        if self._step is None or names != self.names:
            if self._step is not None and bool(self._step >= 0):  # the method changed its terms: keep the record
                return
            self.names = names
            self._step = torch.full((), -1, dtype=torch.long, device=values.device)
            self._bad = torch.zeros_like(bad)
            self._values = torch.zeros_like(values)
        first = bad.any() & (self._step < 0)
        self._step = torch.where(first, torch.full_like(self._step, int(step)), self._step)
        self._bad = torch.where(first, bad, self._bad)
        self._values = torch.where(first, values, self._values)

    def first_step(self) -> Optional[int]:
        """The step of the first non-finite loss, or None (one host-device sync)."""
        if self._step is None:
            return None
        s = int(self._step)
        return None if s < 0 else s

    def check(self, phase: int, method: str, where: str, folder: Optional[Path] = None, step_offset: int = 0) -> None:
        """Raise `NonFiniteLoss` when any step so far had a non-finite loss."""
        step = self.first_step()
        if step is None:
            return
        bad = [n for n, b in zip(self.names, self._bad.tolist()) if b]
        terms = [n for n in bad if n != "loss/total"] or bad
        values = ", ".join(f"{n}={v:.4g}" for n, v in zip(self.names, self._values.tolist()))
        kept = ""
        if folder is not None:
            ckpts = sorted(p.name for p in Path(folder).glob("*.ckpt"))
            before = RunFolder(Path(folder).parent).phase_ckpt(phase - 1)
            good = ([str(before)] if phase > 0 and before.is_file() else []) + [str(Path(folder) / c) for c in ckpts]
            kept = (" Kept, from before the non-finite step: " + ", ".join(good) + "." if good
                    else " No checkpoint of this run precedes it.")
        raise NonFiniteLoss(
            f"non-finite loss at phase {phase}, step {step} (global step {step_offset + step}; method "
            f"'{method}'): {' and '.join(terms)} went non-finite ({values}); found {where}.{kept} "
            "Fix: lower train.lr, check the labels of the data for NaN/inf, or set train.gradient_clip_val."
        )
