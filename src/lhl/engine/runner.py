"""The phase loop of a lifelong run: for each phase add heads, fit, evaluate, checkpoint, record.

Re-running on an existing run folder continues after the last phase recorded in its
`results.json` (the network and the method's state come from that phase's checkpoint; the teacher
is made anew from that network); every phase is seeded by (seed, phase), so a resumed run
reaches the same numbers as an uninterrupted one. The runner owns the global step count.

Within a phase, `fit` resumes from the phase's newest mid-phase checkpoint (`requeue.ckpt`
written on SIGUSR1, or the periodic `last.ckpt`), passed explicitly; both are deleted once the
phase's fit ends, and the evaluation runs on the module as `fit` left it (checked). Under SLURM a
run-wide SIGUSR1 handler requeues the job at the next safe point (`lhl.engine.requeue`).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import List, Optional

import lightning.pytorch as pl
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig

from lhl.config import resolve, to_yaml
from lhl.config.resolve import check_processes
from lhl.core.io import atomic_write_text, stale_temp_files
from lhl.core.locks import HolderLock
from lhl.core.machine import machine_info
from lhl.data.datamodule import LifelongDataModule, build_dataset
from lhl.data.protocol import Phase, phase_seed
from lhl.engine.build import build_method, build_network, build_plan, build_specs, phases_start_from
from lhl.engine.lifelong_module import LifelongModule
from lhl.engine.loggers import build_loggers
from lhl.engine.phase_trainer import phase_trainer
from lhl.engine.requeue import RequeueCallback, Requeued, RequeueSignal
from lhl.runs.folder import RunFolder
from lhl.runs.identity import check_same_run, run_folder_of
from lhl.engine.timing import PhaseTimings, StepClock
from lhl.engine.upgrade import (
    architectures, build_architecture, check_upgrade_networks, checked_architecture, cross_boundary,
)
from lhl.models import MultiHeadPredictor
from lhl.runs.results import Results
from lhl.tasks import build_task

log = logging.getLogger("lhl")


class PhaseRunner:
    """Runs a sequence's phases in order, skipping those already recorded."""

    def __init__(self, cfg: DictConfig):
        self.cfg = resolve(cfg)
        self.folder = run_folder_of(cfg)
        #: run.phases_start_from: every phase after the first starts from this run's network after
        #: the phase before (make curves ISOLATED=1), not from this run's own
        self.start_from = phases_start_from(cfg)
        self.specs = build_specs(cfg)
        self.method = build_method(cfg, self.specs)
        self.plan: List[Phase] = build_plan(self.method, self.specs, cfg.model.get("upgrade_at"))
        check_upgrade_networks(self.cfg, self.method)
        self.loggers: list = []
        self.wandb = None  # the one W&B logger of the whole sequence, when logger=wandb
        self.global_step = 0
        self.timings = PhaseTimings()
        self.requeue = RequeueSignal(on_preempt=self._mark_preempting)
        self._checked_processes = False
        self._lock = None  # the run folder's lock (rank 0)

    def _mark_preempting(self) -> None:
        if self.wandb is not None:
            self.wandb.mark_preempting()

    def _results(self) -> Results:
        if self.folder.results_json.is_file() and self.cfg.run.resume:
            return Results.load(self.folder.root)
        return Results.from_specs(
            list(self.specs.values()), dataset=self.cfg.data.dataset, sequence=self.cfg.sequence.name,
            method=self.cfg.method.name, seed=int(self.cfg.run.seed), eval_reduction=self.cfg.eval.reduction,
            independent_phases=any(p.fresh_model for p in self.plan),
            architectures=architectures(self.cfg, self.plan),  # each phase's backbone (model.upgrade_at)
        )

    def run(self) -> Path:
        """All phases; under SLURM with SIGUSR1 handled run-wide, the W&B run finished whatever happens."""
        self.requeue.install()
        try:
            results = self._run_phases()
        except Requeued as stop:
            if self.wandb is not None:
                self.wandb.finish_run(exit_code=0, preempted=True)
            raise stop
        except SIGTERMException as stop:  # Lightning ends a fit on SIGTERM with SystemExit(0): not a success
            if self.wandb is not None:
                self.wandb.finish_run(exit_code=1)
            raise SystemExit("lhl run: SIGTERM: stopped before the run was complete; the same command resumes it") from stop
        except BaseException:
            if self.wandb is not None:
                self.wandb.finish_run(exit_code=1)
            raise
        finally:
            self.requeue.restore()
            if self._lock is not None:
                self._lock.release()
        if self.wandb is not None:
            self.wandb.finalize_run(results)
        return self.folder.root

    def _run_phases(self):
        cfg = self.cfg
        dm = LifelongDataModule(cfg.data, self.specs, seed=int(cfg.run.seed), channels_last=cfg.train.channels_last)
        if pl.utilities.rank_zero_only.rank == 0:
            dm.prepare_data()
        val_set = build_dataset(cfg.data, "val", list(self.specs)[:1], phases=len(self.specs))  # a missing dataset fails here, at once
        self.requeue.check("after data preparation")
        self.folder.root.mkdir(parents=True, exist_ok=True)
        if pl.utilities.rank_zero_only.rank == 0:  # one writer per run folder, or a clear refusal
            self._lock = HolderLock(self.folder.lock, f"run folder {self.folder.root}").acquire()
            for tmp in stale_temp_files(self.folder.root):  # half-written files of a killed attempt
                tmp.unlink(missing_ok=True)
        check_same_run(self.folder.root, cfg)
        if pl.utilities.rank_zero_only.rank == 0 and not self.folder.config.is_file():
            atomic_write_text(self.folder.config, to_yaml(cfg))  # the first run's settings
        results = self._results()
        results.meta.setdefault("class_names", class_names(val_set, self.specs))
        self._set_aside_unreadable_phases(results)
        done = {int(p["phase"]) for p in results.phases}
        network: Optional[MultiHeadPredictor] = None
        for phase in self.plan:
            if phase.index in done:
                continue
            if network is None or phase.fresh_model:
                network = self._start_network(phase, done)
            elif self.start_from is not None:
                network = self._network_from(self.start_from, phase.index - 1)
            clock = StepClock()
            with self.timings.measure(phase.index, "fit"):
                module, trainer = self._fit_phase(phase, network, dm, clock)
            network = module.network  # a new architecture from an upgrade phase on
            self.timings.add_steps(phase.index, clock)
            self.global_step += trainer.global_step
            self._drop_mid_phase_checkpoints(trainer, phase)
            with self.timings.measure(phase.index, "evaluate"):
                self._evaluate(trainer, module, dm)
            with self.timings.measure(phase.index, "checkpoint"):
                if trainer.is_global_zero:
                    self.folder.save_phase(phase.index, network, self.method.state_dict(), self.global_step)
                trainer.strategy.barrier()
            if trainer.is_global_zero:
                with self.timings.measure(phase.index, "record"):
                    self._record(results, phase, module, dm)
            self.requeue.check(f"after phase {phase.index}")  # every rank: a collective under DDP
        return results

    def _set_aside_unreadable_phases(self, results: Results) -> None:
        """Resuming: a recorded phase whose `phase.ckpt` is truncated or corrupt is set aside
        (`phase.ckpt.corrupt`) and run again, with every phase after it, from the last good one
        (every phase is seeded by (seed, phase): the numbers come out the same)."""
        recorded = sorted({int(p["phase"]) for p in results.phases})
        if not recorded or len(recorded) == len(self.plan):  # nothing to start from, or nothing left to run
            return
        for index in reversed(recorded):
            reason = self.folder.phase_ckpt_unreadable(index)
            if reason is None:
                return
            path = self.folder.phase_ckpt(index)
            then = f"phase {index + 1} runs again from " + (f"phase {index}'s checkpoint" if index else "the start")
            if pl.utilities.rank_zero_only.rank == 0 and path.is_file():
                self.folder.set_aside(path, reason, then)
            results.phases = [p for p in results.phases if int(p["phase"]) < index]

    def _start_network(self, phase: Phase, done) -> MultiHeadPredictor:
        """A new network, or the one saved after the last completed phase (resume), of the
        architecture that checkpoint records (either side of an upgrade)."""
        earlier = [p for p in self.plan if p.index < phase.index and p.index in done]
        pl.seed_everything(phase_seed(int(self.cfg.run.seed), -1), workers=True, verbose=False)
        last = earlier[-1].index if earlier else None
        self.global_step = self.folder.last_step(last)
        if phase.index > 0 and self.start_from is not None and not phase.fresh_model:
            return self._network_from(self.start_from, phase.index - 1)
        if last is None or phase.fresh_model:
            return build_network(self.cfg)
        network = self._network_from(self.folder, last)
        log.info("resumed after phase %d from %s", last, self.folder.phase_dir(last))
        return network

    def _network_from(self, folder: RunFolder, index: int) -> MultiHeadPredictor:
        """The network (and the method's state) saved after phase `index` in `folder`."""
        blob = folder.load_phase(index)
        network = build_architecture(self.cfg, checked_architecture(self.cfg, blob, index, folder.phase_ckpt(index)))
        for name, (kind, ch) in blob["heads"].items():
            network.add_head(build_task(kind, name, ch))
        network.load_state_dict(blob["network"])
        self.method.load_state_dict(blob["method_state"])
        return network

    def _fit_phase(self, phase: Phase, network: MultiHeadPredictor, dm: LifelongDataModule, clock: StepClock):
        cfg = self.cfg
        pl.seed_everything(phase_seed(int(cfg.run.seed), phase.index), workers=True, verbose=False)
        teacher = aligner = None
        if phase.upgrade:  # a new architecture; the old network is the teacher
            network, teacher = cross_boundary(cfg, phase, network, self.specs)
        for t in phase.train_tasks:
            network.add_head(self.specs[t])
        if teacher is not None:
            aligner = self.method.upgrade_aligner(phase, network, teacher)
        dm.set_phase(phase)
        module = LifelongModule(network, self.method, phase, cfg.train, cfg.eval.reduction, self.global_step, aligner,
                                diag_every=cfg.diag.every)
        if teacher is not None and module.needs_teacher():
            module.set_teacher(teacher)  # the TeacherSwap callback keeps it
        self.loggers, self.wandb = build_loggers(cfg, self.folder, phase.index, self.wandb)
        if self.wandb is not None:
            self.wandb.step_offset = self.global_step  # W&B's x-axis: the run's global step
        pdir = self.folder.phase_dir(phase.index)
        pdir.mkdir(parents=True, exist_ok=True)
        requeue = RequeueCallback(self.requeue, self.folder.requeue_ckpt(phase.index))
        trainer = phase_trainer(cfg, phase, len(self.plan), pdir, self.loggers, [clock, requeue])
        if not self._checked_processes:
            check_processes(cfg, trainer.world_size)  # the global batch; paper/mtan presets on >1 process
            self._checked_processes = True
        if trainer.is_global_zero:
            note = f" with teacher on {list(phase.old_tasks)}" if module.needs_teacher() else ""
            if teacher is not None:
                note += f" | upgrade {teacher.architecture} -> {network.architecture}"
            print(f"\n== phase {phase.index + 1}/{len(self.plan)}: train {list(phase.train_tasks)}"
                  f"{note} | evaluate {list(phase.eval_tasks)}", flush=True)
        if not cfg.run.resume and trainer.is_global_zero:
            for stale in self.folder.mid_phase_checkpoints(phase.index):  # never resume a new run from these
                stale.unlink()
        trainer.strategy.barrier()
        ckpt = self.folder.resume_checkpoint(phase.index, set_aside=trainer.is_global_zero)  # unreadable: set aside
        if ckpt is not None and trainer.is_global_zero:
            print(f"   resuming phase {phase.index + 1} from {ckpt}", flush=True)
        trainer.fit(module, datamodule=dm, ckpt_path=None if ckpt is None else str(ckpt))
        if not module.phase_ended:
            # resumed from a checkpoint taken after the phase's last step: Lightning trains no step
            # and skips on_train_end, so the method's end-of-phase estimates run here
            module.to(trainer.strategy.root_device)
            module.method.on_phase_end(phase, network, dm.train_dataloader())
            module.phase_ended = True
        return module, trainer

    def _drop_mid_phase_checkpoints(self, trainer: pl.Trainer, phase: Phase) -> None:
        """A finished fit's mid-phase checkpoints are stale: neither a re-run nor evaluation may load them."""
        if trainer.is_global_zero:
            for stale in self.folder.mid_phase_checkpoints(phase.index):
                stale.unlink()
        trainer.strategy.barrier()

    @staticmethod
    def _evaluate(trainer: pl.Trainer, module: LifelongModule, dm) -> None:
        """Validate the module as `fit` left it. With `ckpt_path=None` Lightning would still load an
        `hpc_ckpt_*.ckpt` of `default_root_dir` under SLURM; none exists (lhl's SIGUSR1 handler
        writes `requeue.ckpt`, and the phase's checkpoints were deleted), and this checks it."""
        trainer.validate(module, datamodule=dm, verbose=False, ckpt_path=None)
        if trainer.ckpt_path is not None:
            raise RuntimeError(f"evaluation loaded {trainer.ckpt_path} instead of the fit's final weights")

    def _record(self, results: Results, phase: Phase, module: LifelongModule, dm) -> None:
        """Rank 0: the results matrix, plots, gallery, learning curve (eval.every_n_epochs), the
        logger's phase summary, one printed line."""
        from lhl.reporting.curves import save_phase_curve
        from lhl.reporting.gallery import save_phase_gallery
        from lhl.reporting.plots import plot_forgetting
        from lhl.reporting.render import write_results

        metrics = module.last_eval
        results.add_phase(phase.index, list(phase.train_tasks), metrics, module.last_details)
        results.note_machine(machine_info(module.device))
        write_results(results, self.folder.root)
        if self.cfg.eval.get("every_n_epochs"):  # the phase's learning curve; a re-run phase replaces its rows
            save_phase_curve(self.folder.curves_json, phase.index, module.curve)
        plot_forgetting(results, self.folder.forgetting_plot)
        n = int(self.cfg.eval.gallery_samples)
        if n > 0:
            save_phase_gallery(module.network, dm, list(phase.eval_tasks), n, self.folder.gallery(phase.index))
        if self.wandb is not None:
            self.wandb.log_phase(results, phase.index, self.global_step)
        parts = [f"{t}: " + ", ".join(f"{k}={v:.4f}" for k, v in m.items()) for t, m in metrics.items()]
        print(f"   after phase {phase.index + 1}: " + " | ".join(parts), flush=True)


def class_names(dataset, specs) -> dict:
    """{task: the dataset's class names} for the tasks whose channels are its `CLASSES` (results
    meta, so that per-class tables name their rows)."""
    names = getattr(dataset, "CLASSES", None)
    if not names:
        return {}
    return {t: [str(n) for n in names] for t, s in specs.items() if s.class_channels and s.channels == len(names)}


def run(cfg: DictConfig) -> Path:
    return PhaseRunner(cfg).run()
