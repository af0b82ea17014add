"""The phase loop of a lifelong run: for each phase add heads, fit, evaluate, checkpoint, record.

Re-running on an existing run folder continues after the last phase recorded in its
`results.json` (the network and the method's state come from that phase's checkpoint; the teacher
is made anew from that network); every phase is seeded by (seed, phase), so a resumed run
reaches the same numbers as an uninterrupted one. The runner owns the global step count.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import List, Optional

import lightning.pytorch as pl
from omegaconf import DictConfig

from lhl.config import resolve, to_yaml
from lhl.core.io import atomic_write_text
from lhl.data.datamodule import LifelongDataModule, build_dataset
from lhl.data.protocol import Phase, phase_seed
from lhl.engine.build import build_method, build_network, build_plan, build_specs, run_folder_of
from lhl.engine.lifelong_module import LifelongModule
from lhl.engine.loggers import build_logger
from lhl.engine.phase_trainer import phase_trainer
from lhl.engine.run_identity import check_same_run
from lhl.engine.timing import PhaseTimings, StepClock
from lhl.models import MultiHeadPredictor
from lhl.reporting.results import Results
from lhl.tasks import build_task

log = logging.getLogger("lhl")


class PhaseRunner:
    """Runs a sequence's phases in order, skipping those already recorded."""

    def __init__(self, cfg: DictConfig):
        self.cfg = resolve(cfg)
        self.folder = run_folder_of(cfg)
        self.specs = build_specs(cfg)
        self.method = build_method(cfg, self.specs)
        self.plan: List[Phase] = build_plan(self.method, self.specs)
        self.logger = None
        self.global_step = 0
        self.timings = PhaseTimings()

    def _results(self) -> Results:
        if self.folder.results_json.is_file() and self.cfg.run.resume:
            return Results.load(self.folder.root)
        return Results.from_specs(
            list(self.specs.values()), dataset=self.cfg.data.dataset, sequence=self.cfg.sequence.name,
            method=self.cfg.method.name, seed=int(self.cfg.run.seed), eval_reduction=self.cfg.eval.reduction,
            independent_phases=any(p.fresh_model for p in self.plan),
        )

    def run(self) -> Path:
        cfg = self.cfg
        dm = LifelongDataModule(cfg.data, self.specs, seed=int(cfg.run.seed), channels_last=cfg.train.channels_last)
        if pl.utilities.rank_zero_only.rank == 0:
            dm.prepare_data()
        build_dataset(cfg.data, "val", list(self.specs)[:1])  # a missing dataset fails here, at once
        self.folder.root.mkdir(parents=True, exist_ok=True)
        check_same_run(self.folder.root, cfg)
        if pl.utilities.rank_zero_only.rank == 0 and not self.folder.config.is_file():
            atomic_write_text(self.folder.config, to_yaml(cfg))  # the first run's settings
        results = self._results()
        done = {int(p["phase"]) for p in results.phases}
        network: Optional[MultiHeadPredictor] = None
        for phase in self.plan:
            if phase.index in done:
                continue
            if network is None or phase.fresh_model:
                network = self._start_network(phase, done)
            clock = StepClock()
            with self.timings.measure(phase.index, "fit"):
                module, trainer = self._fit_phase(phase, network, dm, clock)
            self.timings.add_steps(phase.index, clock)
            self.global_step += trainer.global_step
            self._drop_requeue_checkpoints(trainer, phase)
            with self.timings.measure(phase.index, "evaluate"):
                trainer.validate(module, datamodule=dm, verbose=False)
            with self.timings.measure(phase.index, "checkpoint"):
                if trainer.is_global_zero:
                    self.folder.save_phase(phase.index, network, self.method.state_dict(), self.global_step)
                trainer.strategy.barrier()
            if trainer.is_global_zero:
                with self.timings.measure(phase.index, "record"):
                    self._record(results, phase, module, dm)
        if self.logger is not None and hasattr(self.logger, "finalize_run"):
            self.logger.finalize_run(results)
        return self.folder.root

    def _start_network(self, phase: Phase, done) -> MultiHeadPredictor:
        """A new network, or the one saved after the last completed phase (resume)."""
        earlier = [p for p in self.plan if p.index < phase.index and p.index in done]
        pl.seed_everything(phase_seed(int(self.cfg.run.seed), -1), workers=True, verbose=False)
        network = build_network(self.cfg)
        last = earlier[-1].index if earlier else None
        self.global_step = self.folder.last_step(last)
        if last is not None and not phase.fresh_model:
            blob = self.folder.load_phase(last)
            for name, (kind, ch) in blob["heads"].items():
                network.add_head(build_task(kind, name, ch))
            network.load_state_dict(blob["network"])
            self.method.load_state_dict(blob["method_state"])
            log.info("resumed after phase %d from %s", last, self.folder.phase_dir(last))
        return network

    def _fit_phase(self, phase: Phase, network: MultiHeadPredictor, dm: LifelongDataModule, clock: StepClock):
        cfg = self.cfg
        pl.seed_everything(phase_seed(int(cfg.run.seed), phase.index), workers=True, verbose=False)
        for t in phase.train_tasks:
            network.add_head(self.specs[t])
        dm.set_phase(phase)
        module = LifelongModule(network, self.method, phase, cfg.train, cfg.eval.reduction, self.global_step)
        self.logger = build_logger(cfg, self.folder.root, phase.index, self.logger)
        pdir = self.folder.phase_dir(phase.index)
        pdir.mkdir(parents=True, exist_ok=True)
        trainer = phase_trainer(cfg, phase, len(self.plan), pdir, self.logger, [clock])
        if trainer.is_global_zero:
            teacher = f" with teacher on {list(phase.old_tasks)}" if module.needs_teacher() else ""
            print(f"\n== phase {phase.index + 1}/{len(self.plan)}: train {list(phase.train_tasks)}"
                  f"{teacher} | evaluate {list(phase.eval_tasks)}", flush=True)
        if not cfg.run.resume:
            for stale in self.folder.hpc_checkpoints(phase.index):  # never feed an old SLURM checkpoint to a new run
                stale.unlink()
        trainer.fit(module, datamodule=dm)
        return module, trainer

    def _drop_requeue_checkpoints(self, trainer: pl.Trainer, phase: Phase) -> None:
        """A finished phase's SLURM checkpoints are stale: evaluation must not reload them."""
        if trainer.is_global_zero:
            for stale in self.folder.hpc_checkpoints(phase.index):
                stale.unlink()
        trainer.strategy.barrier()

    def _record(self, results: Results, phase: Phase, module: LifelongModule, dm) -> None:
        """Rank 0: the results matrix, plots, gallery, the logger's phase summary, one printed line."""
        from lhl.reporting.gallery import save_phase_gallery
        from lhl.reporting.plots import plot_forgetting

        metrics = module.last_eval
        results.add_phase(phase.index, list(phase.train_tasks), metrics)
        results.save(self.folder.root)
        plot_forgetting(results, self.folder.forgetting_plot)
        n = int(self.cfg.eval.gallery_samples)
        if n > 0:
            save_phase_gallery(module.network, dm, list(phase.eval_tasks), n, self.folder.gallery(phase.index))
        if hasattr(self.logger, "log_phase"):
            self.logger.log_phase(results, phase.index)
        parts = [f"{t}: " + ", ".join(f"{k}={v:.4f}" for k, v in m.items()) for t, m in metrics.items()]
        print(f"   after phase {phase.index + 1}: " + " | ".join(parts), flush=True)


def run(cfg: DictConfig) -> Path:
    return PhaseRunner(cfg).run()
