"""`lhl distill`: train (or load) a teacher, then students alone / with each registered distiller, one table.

The run folder gets the resolved `config.yaml`, `teacher.ckpt` (reused when present), one CSV log
folder per model, and `results.json` + `results.md` (mIoU and pixel accuracy on the val set). The
table keeps the rows of earlier runs in the folder made with the same config and teacher, and those
rows are not trained again, so an interrupted run resumes at its first missing row.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Dict, Optional, Sequence

import lightning.pytorch as pl
from lightning.pytorch.loggers import CSVLogger
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.utils.data import DataLoader

from lhl.core.io import atomic_write_text
from lhl.distill.baselines import StudentOnly
from lhl.distill.checkpoint import file_digest, load_teacher, model_spec, save_model
from lhl.distill.config import devices, run_name
from lhl.distill.loaders import build_loaders
from lhl.distill.methods import build_distiller, needs_teacher, requested_kinds
from lhl.distill.student_module import DistillModule
from lhl.distill.render import write_results
from lhl.distill.rows import config_digest, earlier_rows
from lhl.distill.segmenters import Segmenter, build_segmenter
from lhl.runs.folder import CONFIG_YAML, RESULTS_JSON


def _trainer(cfg: DictConfig, root: Path, name: str, steps: int) -> pl.Trainer:
    return pl.Trainer(
        default_root_dir=str(root / name), max_steps=steps, max_epochs=-1,
        accelerator=cfg.train.accelerator, devices=devices(cfg), precision=cfg.train.precision,
        logger=CSVLogger(str(root), name=name, version=""), enable_checkpointing=False,
        enable_progress_bar=bool(cfg.train.progress_bar), enable_model_summary=False,
        log_every_n_steps=int(cfg.train.log_every_n_steps), num_sanity_val_steps=0, limit_val_batches=0,
    )


def _evaluate(cfg: DictConfig, module: DistillModule, val, root: Path, name: str) -> Dict[str, float]:
    trainer = pl.Trainer(accelerator=cfg.train.accelerator, devices=devices(cfg), logger=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         default_root_dir=str(root / name))
    metrics = trainer.validate(module, val, verbose=False)[0]
    return {k.split("/", 1)[1]: float(v) for k, v in metrics.items()}


def train_model(cfg, module: DistillModule, train, val, root: Path, name: str, steps: int) -> Dict:
    """Fit `module` for `steps`, then evaluate it; returns its metrics and wall time."""
    start = time.time()
    if steps > 0:
        _trainer(cfg, root, name, steps).fit(module, train)
    result = _evaluate(cfg, module, val, root, name)
    result["train_s"] = round(time.time() - start, 1)
    return result


def _module(cfg, student, distiller, teacher, steps) -> DistillModule:
    return DistillModule(student, distiller, teacher, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay,
                         optimizer=cfg.train.optimizer, max_steps=steps)


def _reseed(cfg: DictConfig, train: DataLoader) -> None:
    """Same initialisation and the same batch order for every model of the run."""
    pl.seed_everything(int(cfg.run.seed), workers=True)
    train.generator.manual_seed(int(cfg.run.seed))


def _params(model: nn.Module) -> float:
    return round(sum(p.numel() for p in model.parameters()) / 1e6, 3)


def prepare_teacher(cfg: DictConfig, ckpt: Path, train, num_classes: int, img_size):
    """The teacher loaded from `ckpt` (checked against the config), or built untrained; and the spec
    to save it with after training (None when loaded)."""
    if ckpt.exists():
        return load_teacher(ckpt, cfg, num_classes), None
    _reseed(cfg, train)
    spec = model_spec(cfg.teacher, num_classes, img_size)
    return build_segmenter(**spec, key="teacher"), spec


def check_students(cfg: DictConfig, kinds: Sequence[str], teacher: Segmenter, spec: Dict) -> None:
    """Build the student and every requested distiller once, so bad settings fail before training."""
    student = build_segmenter(**spec, key="student")
    for kind in kinds:
        build_distiller(kind, cfg, teacher, student)


def teacher_stage(cfg: DictConfig, teacher: Segmenter, spec: Optional[Dict], ckpt: Path, train, val,
                  root: Path) -> Dict:
    """Train the teacher when it is new (`spec` given) and save it to `ckpt`; its metrics either way."""
    steps = int(cfg.train.teacher_steps) if spec is not None else 0
    if spec is not None:
        _reseed(cfg, train)
    module = _module(cfg, teacher, StudentOnly(), None, steps)
    result = {"model": teacher.name, "params_m": _params(teacher), "checkpoint": str(ckpt),
              **train_model(cfg, module, train, val, root, "teacher", steps)}
    # how closely the teacher fits the labels of the images the students are distilled on: near 100 %,
    # its soft targets there carry little beyond the labels themselves
    on_train = DataLoader(train.dataset, batch_size=train.batch_size, shuffle=False, num_workers=train.num_workers)
    fit = _evaluate(cfg, module, on_train, root, "teacher")
    result.update(train_miou=fit["miou"], train_pixacc=fit["pixacc"])
    if spec is not None:
        save_model(teacher, spec, ckpt)
    return result


def run(cfg: DictConfig) -> Path:
    """The whole comparison; returns the run folder."""
    kinds = requested_kinds(cfg.run.kd)
    devices(cfg)
    root = Path(cfg.run.out_dir) / run_name(cfg)
    ckpt = Path(cfg.run.teacher_ckpt) if cfg.run.teacher_ckpt else root / "teacher.ckpt"
    if cfg.run.teacher_ckpt and not ckpt.exists():
        raise FileNotFoundError(f"run.teacher_ckpt={ckpt}: no such file (leave it unset to train a teacher)")
    train, val, num_classes = build_loaders(cfg)
    img_size = val.dataset[0]["image"].shape[-2:]
    teacher, teacher_spec = prepare_teacher(cfg, ckpt, train, num_classes, img_size)
    spec, steps = model_spec(cfg.student, num_classes, img_size), int(cfg.train.student_steps)
    check_students(cfg, kinds, teacher, spec)

    root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(root / CONFIG_YAML, OmegaConf.to_yaml(cfg, resolve=True))
    results = {"teacher": teacher_stage(cfg, teacher, teacher_spec, ckpt, train, val, root)}
    teacher_id = results["teacher"]["teacher_id"] = file_digest(ckpt)
    results.update(earlier_rows(root, cfg, teacher_id))
    write_results(root, results, cfg)
    kept = [k for k in kinds if k in results]  # an earlier run of this folder made them with this config and teacher
    if kept:
        print(f"{root}: keeping the earlier rows {', '.join(kept)} (same config and teacher); delete "
              f"{root / RESULTS_JSON} to train them again")
    for kind in kinds:
        if kind in kept:
            continue
        _reseed(cfg, train)
        student = build_segmenter(**spec, key="student")
        distiller = build_distiller(kind, cfg, teacher, student)
        uses_teacher = needs_teacher(kind)
        module = _module(cfg, student, distiller, teacher if uses_teacher else None, steps)
        results[kind] = {"model": student.name, "params_m": _params(student),
                         **train_model(cfg, module, train, val, root, kind, steps),
                         "config_hash": config_digest(cfg, kind),
                         "teacher_id": teacher_id if uses_teacher else None}
        write_results(root, results, cfg)
    return root
