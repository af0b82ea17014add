"""The phase loop of a lifelong run: for each phase add heads, fit, evaluate, checkpoint, record.

Re-running on an existing run folder continues after the last phase recorded in its
`results.json` (the network, the method's state and the teacher come from that phase's
checkpoint); every phase is seeded by (seed, phase) so a resumed run reaches the same numbers.
"""
from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Dict, List, Optional

import lightning.pytorch as pl
import torch
from omegaconf import DictConfig, OmegaConf

from lhl.engine.teacher import TeacherSwap
from lhl.config import Config, method_tag, to_yaml
from lhl.data.datamodule import LifelongDataModule, build_dataset, phase_seed, task_info
from lhl.data.sequence import Sequence
from lhl.core.io import atomic_write_text
from lhl.engine.loggers import build_logger
from lhl.methods import METHODS
from lhl.methods.base import Method, Phase, options_from_dict
from lhl.models import MultiHeadPredictor
from lhl.engine.lifelong_module import LifelongModule
from lhl.engine.progress import PhaseProgressBar
from lhl.reporting.results import Results
from lhl.tasks import build_task

log = logging.getLogger("lhl")


def run_dir_of(cfg: DictConfig) -> Path:
    name = cfg.run.name or f"{cfg.sequence.name}/{method_tag(cfg)}/seed{cfg.run.seed}"
    return Path(cfg.run.out_dir) / name


def build_method(cfg: DictConfig, specs) -> Method:
    cls = METHODS.get(cfg.method.name)
    opts = {k: v for k, v in OmegaConf.to_container(cfg.method, resolve=True).items() if k != "name"}
    if "seed" in {f.name for f in dataclasses.fields(cls.Options)}:
        opts.setdefault("seed", int(cfg.run.seed))  # e.g. ER's reservoir stream follows the run seed
    where = f"method '{method_tag(cfg)}' (experiments/method/{method_tag(cfg)}.yaml or the command line)"
    return cls(options_from_dict(cls.Options, opts, where), specs)


def build_network(cfg: DictConfig) -> MultiHeadPredictor:
    m = cfg.model
    net = MultiHeadPredictor(
        backbone=m.backbone, pretrained=m.pretrained, output_stride=m.output_stride,
        head_width=m.head_width, aspp_rates=list(m.aspp_rates), dropout=m.dropout,
    )
    if cfg.train.channels_last:
        net = net.to(memory_format=torch.channels_last)
    return net


#: keys that may change between a run and its resumption (hardware, logging, progress display)
RESUMABLE_CHANGES = (
    "run.resume", "logger", "train.progress_bar", "train.log_every_n_steps", "data.num_workers",
    "data.eval_batch_size", "train.devices", "train.num_nodes", "train.strategy", "train.accelerator",
    "train.precision", "train.compile", "train.channels_last", "train.teacher_pass",
    "eval.gallery_samples",
)


def _flat(d, prefix=""):
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and k not in ("options", "method"):
            out.update(_flat(v, key + "."))
        else:
            out[key] = v
    return out


def _check_same_run(run_dir: Path, cfg: DictConfig) -> None:
    """Refuse to continue a run folder made with settings that change the results."""
    path = run_dir / "config.yaml"
    if not path.is_file():
        return
    old = _flat(OmegaConf.to_container(OmegaConf.load(path), resolve=True))
    new = _flat(OmegaConf.to_container(cfg, resolve=True))
    # a key added to the schema after the folder was made counts as its default there
    defaults = _flat(OmegaConf.to_container(OmegaConf.structured(Config), resolve=True))
    for key in sorted(set(old) | set(new)):
        before = old.get(key, defaults.get(key))
        if key.startswith(RESUMABLE_CHANGES) or before == new.get(key):
            continue
        raise ValueError(
            f"{path}: this run folder was made with {key}={before!r}, not {new.get(key)!r}. "
            "Use another run.name / run.out_dir, set the old value, or delete the folder to start over."
        )


class PhaseRunner:
    """Runs a sequence's phases in order, skipping those already recorded."""

    def __init__(self, cfg: DictConfig):
        self.cfg = cfg
        self.run_dir = run_dir_of(cfg)
        info = task_info(cfg.data)
        self.sequence = Sequence(cfg.sequence.name, cfg.data.dataset, list(cfg.sequence.tasks), info)
        self.specs = {t: build_task(info[t][0], t, info[t][1]) for t in self.sequence.tasks}
        self.method = build_method(cfg, self.specs)
        self.plan: List[Phase] = self.method.plan(self.sequence.tasks)
        self.logger = None

    # --- bookkeeping --------------------------------------------------------------------------
    def _results(self) -> Results:
        if (self.run_dir / "results.json").is_file() and self.cfg.run.resume:
            return Results.load(self.run_dir)
        return Results.from_specs(
            [self.specs[t] for t in self.sequence.tasks], dataset=self.sequence.dataset,
            sequence=self.sequence.name, method=self.cfg.method.name, seed=int(self.cfg.run.seed),
            eval_reduction=self.cfg.eval.reduction,
        )

    def _phase_dir(self, phase: Phase) -> Path:
        return self.run_dir / f"phase_{phase.index}"

    def _seen(self, upto: int) -> List[str]:
        seen: List[str] = []
        for p in self.plan[: upto + 1]:
            seen += [t for t in p.tasks if t not in seen]
        return seen

    # --- the loop -----------------------------------------------------------------------------
    def run(self) -> Path:
        cfg = self.cfg
        dm = LifelongDataModule(cfg.data, self.sequence.tasks, seed=int(cfg.run.seed))
        if pl.utilities.rank_zero_only.rank == 0:
            dm.prepare_data()
        build_dataset(cfg.data, "val", self.sequence.tasks[:1])  # a missing dataset fails here, at once
        self.run_dir.mkdir(parents=True, exist_ok=True)
        _check_same_run(self.run_dir, cfg)
        if pl.utilities.rank_zero_only.rank == 0 and not (self.run_dir / "config.yaml").is_file():
            atomic_write_text(self.run_dir / "config.yaml", to_yaml(cfg))  # the first run's settings
        results = self._results()
        done = {int(p["phase"]) for p in results.phases}
        network: Optional[MultiHeadPredictor] = None
        self.step_offset = 0
        for phase in self.plan:
            if phase.index in done:
                continue
            if network is None or phase.fresh_model:
                network = self._start_network(phase, done)
            module, trainer = self._fit_phase(phase, network, dm, self.step_offset)
            self.step_offset += trainer.global_step
            module.global_step_offset = self.step_offset
            metrics = self._evaluate(trainer, module, dm)
            self._save_phase(trainer, module, phase)
            if trainer.is_global_zero:
                results.add_phase(phase.index, list(phase.tasks), metrics)
                results.save(self.run_dir)
                self._plots(results, module, dm, phase)
                if hasattr(self.logger, "log_phase"):
                    self.logger.log_phase(results, phase.index)
                self._print_phase(phase, metrics)
        if self.logger is not None and hasattr(self.logger, "finalize_run"):
            self.logger.finalize_run(results)
        return self.run_dir

    def _start_network(self, phase: Phase, done) -> MultiHeadPredictor:
        """A new network, or the one saved after the last completed phase (resume)."""
        earlier = [p for p in self.plan if p.index < phase.index and p.index in done]
        pl.seed_everything(phase_seed(int(self.cfg.run.seed), -1), workers=True, verbose=False)
        network = build_network(self.cfg)
        if earlier and not phase.fresh_model:
            last = earlier[-1]
            ckpt = torch.load(
                self._phase_dir(last) / "phase.ckpt", map_location="cpu", weights_only=False
            )
            info = ckpt["lhl"]
            for name, (kind, ch) in info["heads"].items():
                network.add_head(build_task(kind, name, ch))
            state = {k[len("network."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("network.")}
            network.load_state_dict(state)
            self.method.load_state_dict(info["method_state"])
            self.step_offset = int(info.get("global_step", 0))
            log.info("resumed after phase %d from %s", last.index, self._phase_dir(last))
        return network

    def _fit_phase(self, phase: Phase, network, dm, step_offset):
        cfg = self.cfg
        pl.seed_everything(phase_seed(int(cfg.run.seed), phase.index), workers=True, verbose=False)
        for t in phase.tasks:
            network.add_head(self.specs[t])
        seen = list(phase.tasks) if phase.fresh_model else self._seen(phase.index)
        old = [t for t in seen if t not in phase.tasks]
        eval_tasks = phase.eval_tasks or seen
        dm.set_phase(phase, eval_tasks)
        module = LifelongModule(
            network, self.method, phase, old, eval_tasks, cfg.train, cfg.eval.reduction
        )
        module.global_step_offset = step_offset
        dm.channels_last = bool(cfg.train.channels_last)
        dm.augment = None
        if cfg.data.augment:
            from lhl.data.augment import DenseAugment

            dm.augment = DenseAugment.for_dataset(cfg.data, {t: self.specs[t].kind for t in phase.tasks})
        self.logger = build_logger(cfg, self.run_dir, phase.index, self.logger)
        pdir = self._phase_dir(phase)
        pdir.mkdir(parents=True, exist_ok=True)
        t = cfg.train
        trainer = pl.Trainer(
            default_root_dir=str(pdir),
            max_epochs=t.epochs,
            max_steps=t.max_steps,
            limit_train_batches=t.limit_train_batches,
            limit_val_batches=cfg.eval.limit_batches,
            check_val_every_n_epoch=10**9,  # evaluation happens once, after fit
            num_sanity_val_steps=0,
            accelerator=t.accelerator,
            devices=t.devices,
            num_nodes=t.num_nodes,
            strategy=_strategy(t),
            precision=t.precision,
            sync_batchnorm=t.sync_batchnorm,
            deterministic=t.deterministic,
            gradient_clip_val=t.gradient_clip_val,
            log_every_n_steps=t.log_every_n_steps,
            logger=self.logger if self.logger is not None else False,
            callbacks=[TeacherSwap()]
            + ([PhaseProgressBar(phase.index, len(self.plan), phase.tasks)] if t.progress_bar else []),
            enable_checkpointing=False,
            enable_model_summary=False,
            enable_progress_bar=bool(t.progress_bar),
            use_distributed_sampler=False,
        )
        if trainer.is_global_zero:
            print(
                f"\n== phase {phase.index + 1}/{len(self.plan)}: train {phase.tasks}"
                f"{' with teacher on ' + str(old) if old and self.method.uses_teacher else ''}"
                f" | evaluate {eval_tasks}",
                flush=True,
            )
        if not self.cfg.run.resume:
            for stale in pdir.glob("hpc_ckpt_*.ckpt"):  # never feed an old SLURM checkpoint to a new run
                stale.unlink()
        trainer.fit(module, datamodule=dm)
        return module, trainer

    def _evaluate(self, trainer, module, dm) -> Dict[str, Dict[str, float]]:
        trainer.validate(module, datamodule=dm, verbose=False)
        return module.last_eval

    def _save_phase(self, trainer, module, phase: Phase) -> None:
        """The phase checkpoint, written once and atomically (temp name, then rename)."""
        final = self._phase_dir(phase) / "phase.ckpt"
        tmp = final.with_name(final.name + ".tmp")
        trainer.save_checkpoint(str(tmp), weights_only=True)  # Adam restarts every phase anyway
        trainer.strategy.barrier()
        if trainer.is_global_zero:
            os.replace(tmp, final)

    def _plots(self, results: Results, module, dm, phase: Phase) -> None:
        from lhl.reporting.gallery import save_phase_gallery
        from lhl.reporting.plots import plot_forgetting

        plot_forgetting(results, self.run_dir / "forgetting.png")
        n = int(self.cfg.eval.gallery_samples)
        if n > 0:
            save_phase_gallery(
                module.network, dm, module.eval_tasks, n, self._phase_dir(phase) / "gallery.png"
            )

    @staticmethod
    def _print_phase(phase: Phase, metrics) -> None:
        parts = [
            f"{t}: " + ", ".join(f"{k}={v:.4f}" for k, v in m.items()) for t, m in metrics.items()
        ]
        print(f"   after phase {phase.index + 1}: " + " | ".join(parts), flush=True)


def _process_count(t: DictConfig) -> int:
    devices = t.devices
    if OmegaConf.is_list(devices) or isinstance(devices, (list, tuple)):
        n = len(devices)
    elif str(devices) in ("auto", "-1"):
        n = max(torch.cuda.device_count(), 1) if t.accelerator in ("auto", "gpu", "cuda") else 1
    else:
        n = int(devices)
    return n * int(t.num_nodes)


def _strategy(t: DictConfig):
    """DDP that lets heads idle in a phase (old heads under finetune, EWC, ER) without erroring."""
    if t.strategy in ("auto", "ddp") and _process_count(t) > 1:
        return "ddp_find_unused_parameters_true"
    return t.strategy


def run(cfg: DictConfig) -> Path:
    return PhaseRunner(cfg).run()
