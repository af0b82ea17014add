"""A step progress bar that also says which phase of the sequence is running."""
from __future__ import annotations

import sys

from lightning.pytorch.callbacks import TQDMProgressBar


class PhaseProgressBar(TQDMProgressBar):
    """TQDM over steps, described as `phase 2/3 [depth] epoch 1`; sparse refreshes when piped."""

    def __init__(self, phase: int, total: int, tasks):
        super().__init__(refresh_rate=1 if sys.stdout.isatty() else 50)  # SLURM logs are not flooded
        self.label = f"phase {phase + 1}/{total} [{', '.join(tasks)}]"

    def on_train_epoch_start(self, trainer, *args) -> None:
        super().on_train_epoch_start(trainer, *args)
        self.train_progress_bar.set_description(f"{self.label} epoch {trainer.current_epoch}")
