"""One W&B run per lifelong sequence: losses per step on the run's global step axis, results
tables and plots after every phase, final metrics and forgetting in the run summary."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional

from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_only

from lhl.reporting.scores import final_metrics, forgetting
from lhl.runs.folder import FORGETTING_PNG

#: W&B's x-axis: the step count of the whole sequence (each phase's Trainer restarts at 0)
STEP = "step_global"


def summary_values(results) -> dict:
    """`final/<task>/<metric>` and `forgetting/<task>/<metric>`: the run's Δ-free summary."""
    out = {f"final/{t}/{m}": float(v) for t, ms in final_metrics(results).items() for m, v in ms.items()}
    out.update({f"forgetting/{t}/{m}": float(v) for t, ms in forgetting(results).items() for m, v in ms.items()})
    out["phases_done"] = len(results.phases)
    return out


class SequenceWandbLogger(WandbLogger):
    """A WandbLogger shared by the Trainers of all phases (one W&B run, resumed by id)."""

    def __init__(self, *, save_dir: str, offline: bool, config: dict, **kwargs):
        super().__init__(save_dir=save_dir, offline=offline, job_type="lifelong", config=config,
                         resume="allow", **kwargs)
        self._run_dir = Path(save_dir)
        self._offline = offline
        self.step_offset = 0  # the global step before the current phase (set by the runner)
        self._axis_defined = False

    @property
    def experiment(self):
        """Lightning's run, with every metric plotted against `step_global` (not the per-phase
        `trainer/global_step`, which restarts at 0 in each phase)."""
        exp = super().experiment
        if not self._axis_defined and rank_zero_only.rank == 0 and getattr(exp, "define_metric", None):
            exp.define_metric(STEP)
            exp.define_metric("*", step_metric=STEP, step_sync=True)
            self._axis_defined = True
        return exp

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: Optional[int] = None) -> None:
        metrics = dict(metrics)
        if step is not None and STEP not in metrics:
            metrics[STEP] = self.step_offset + int(step)
        super().log_metrics(metrics, step)

    @rank_zero_only
    def log_phase(self, results, phase: int, global_step: int) -> None:
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
            STEP: int(global_step),
        }
        for task, ms in results.phases[-1]["metrics"].items():
            for metric, value in ms.items():
                payload[f"phase_end/{task}/{metric}"] = float(value)
        plot = self._run_dir / FORGETTING_PNG
        if plot.is_file():
            payload["forgetting"] = wandb.Image(str(plot))
        gallery = self._run_dir / f"phase_{phase}" / "gallery.png"
        if gallery.is_file():
            payload["gallery"] = wandb.Image(str(gallery), caption=f"after phase {phase}")
        self.experiment.log(payload)

    @rank_zero_only
    def mark_preempting(self) -> None:
        """SIGUSR1: tell W&B the run is being pre-empted (it is resumed by id after the requeue)."""
        if self._experiment is not None:
            self._experiment.mark_preempting()

    @rank_zero_only
    def finalize_run(self, results) -> None:
        """The sequence is complete: final metrics and forgetting into the summary, then finish."""
        if self._experiment is not None or results.phases:
            self.experiment.summary.update(summary_values(results))
        self.finish_run(exit_code=0)

    @rank_zero_only
    def finish_run(self, exit_code: int = 0, preempted: bool = False) -> None:
        """Finish the W&B run (on success, error or requeue) and print the `wandb sync` hint offline."""
        if self._experiment is None:
            return
        import wandb

        run_dir = Path(self._experiment.dir).parent
        wandb.finish(exit_code=exit_code)
        self._experiment = None
        self._axis_defined = False
        if self._offline:
            what = "pre-empted; it continues after the requeue" if preempted else "saved offline"
            print(f"W&B run {what}; upload it with: wandb sync {run_dir}", flush=True)
