"""One W&B run per lifelong sequence: losses per step, results tables and plots after every phase."""
from __future__ import annotations

from pathlib import Path

from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_only


class SequenceWandbLogger(WandbLogger):
    """A WandbLogger shared by the Trainers of all phases (one W&B run, grouped for `compare`)."""

    def __init__(self, *, save_dir: str, offline: bool, config: dict, **kwargs):
        super().__init__(save_dir=save_dir, offline=offline, job_type="lifelong", config=config, **kwargs)
        self._run_dir = Path(save_dir)
        self._offline = offline

    @rank_zero_only
    def log_phase(self, results, phase: int) -> None:
        """R[phase][task][metric] as a table, the forgetting plot and this phase's gallery."""
        import wandb

        rows = [
            [int(p["phase"]), task, metric, float(value)]
            for p in results.phases
            for task, ms in p["metrics"].items()
            for metric, value in ms.items()
        ]
        payload = {
            "results": wandb.Table(columns=["phase", "task", "metric", "value"], data=rows),
            "phase": phase,
        }
        for task, ms in results.phases[-1]["metrics"].items():
            for metric, value in ms.items():
                payload[f"phase_end/{task}/{metric}"] = float(value)
        plot = self._run_dir / "forgetting.png"
        if plot.is_file():
            payload["forgetting"] = wandb.Image(str(plot))
        gallery = self._run_dir / f"phase_{phase}" / "gallery.png"
        if gallery.is_file():
            payload["gallery"] = wandb.Image(str(gallery), caption=f"after phase {phase}")
        self.experiment.log(payload)

    @rank_zero_only
    def finalize_run(self, results) -> None:
        import wandb

        run_dir = Path(self.experiment.dir).parent
        wandb.finish()
        if self._offline:
            print(f"W&B run saved offline; upload it with: wandb sync {run_dir}", flush=True)
