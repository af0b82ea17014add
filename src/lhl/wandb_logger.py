"""One W&B run per lifelong sequence: losses per step, results tables and plots per phase."""
from __future__ import annotations

from pathlib import Path

from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_only


class SequenceWandbLogger(WandbLogger):
    """WandbLogger shared by the Trainers of all phases; `finalize_run` uploads the results."""

    def __init__(self, *, save_dir: str, offline: bool, config: dict, **kwargs):
        super().__init__(save_dir=save_dir, offline=offline, job_type="lifelong", **kwargs)
        self._run_dir = Path(save_dir)
        self._offline = offline
        self._config = config

    @rank_zero_only
    def finalize_run(self, results) -> None:
        import wandb

        exp = self.experiment
        exp.config.update(self._config, allow_val_change=True)
        rows = [
            [int(p["phase"]), task, metric, float(value)]
            for p in results.phases
            for task, ms in p["metrics"].items()
            for metric, value in ms.items()
        ]
        exp.log({"results": wandb.Table(columns=["phase", "task", "metric", "value"], data=rows)})
        images = {}
        plot = self._run_dir / "forgetting.png"
        if plot.is_file():
            images["forgetting"] = wandb.Image(str(plot))
        for g in sorted(self._run_dir.glob("phase_*/gallery.png")):
            images[f"gallery/{g.parent.name}"] = wandb.Image(str(g))
        if images:
            exp.log(images)
        run_path = exp.dir
        wandb.finish()
        if self._offline:
            print(f"W&B run saved offline; upload it with: wandb sync {Path(run_path).parent}")
