"""Where a phase's wall-clock time goes: training steps versus the fixed costs around them
(Trainer and loader start-up, evaluation, the checkpoint, plots and gallery). Read by
`lhl bench-e2e`, which reports the per-phase overhead."""
from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Dict, Iterator

import lightning.pytorch as pl


class StepClock(pl.Callback):
    """Sums the wall time of the training batches (forward, backward, optimiser step, hooks)."""

    def __init__(self):
        self.seconds = 0.0
        self.steps = 0
        self._start = 0.0

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.seconds += time.perf_counter() - self._start
        self.steps += 1


class PhaseTimings:
    """Per phase: {"fit", "steps", "evaluate", "checkpoint", "record"} in seconds, plus the step count."""

    def __init__(self):
        self.phases: Dict[int, Dict[str, float]] = {}

    @contextmanager
    def measure(self, phase: int, part: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            entry = self.phases.setdefault(phase, {})
            entry[part] = entry.get(part, 0.0) + time.perf_counter() - start

    def add_steps(self, phase: int, clock: StepClock) -> None:
        entry = self.phases.setdefault(phase, {})
        entry["steps"], entry["step_count"] = clock.seconds, clock.steps

    def overhead(self, phase: int) -> float:
        """Seconds of the phase spent outside its training steps and evaluation."""
        e = self.phases[phase]
        return e.get("fit", 0.0) - e.get("steps", 0.0) + e.get("checkpoint", 0.0) + e.get("record", 0.0)
