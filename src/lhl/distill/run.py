"""`lhl distill`: train (or load) a teacher, then students alone / KD / CWD / HeteroAKD, one table.

The run folder gets the resolved `config.yaml`, `teacher.ckpt` (reused when present), one CSV log
folder per model, and `results.json` + `results.md` (mIoU and pixel accuracy on the val set).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import lightning.pytorch as pl
import torch
from lightning.pytorch.loggers import CSVLogger
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError
from torch import nn
from torch.utils.data import DataLoader

from lhl.distill.baselines import ChannelWiseKD, LogitKD, StudentOnly
from lhl.distill.heteroakd import HeteroAKD, stage_channels
from lhl.distill.module import DistillModule
from lhl.distill.segmenters import Segmenter, build_segmenter
from lhl.io import atomic_torch_save, atomic_write_json, atomic_write_text

PRESET_DIR = Path(__file__).resolve().parents[3] / "experiments" / "kd"
KD_METHODS = ("none", "kd", "cwd", "heteroakd")
LABELS = {"teacher": "teacher", "none": "student alone", "kd": "logit KD", "cwd": "CWD",
          "heteroakd": "HeteroAKD"}
#: config nodes whose keys are free (dataset options, timm kwargs)
_OPEN_NODES = ("data.synthetic", "data.nyuv2", "data.cityscapes", "teacher.encoder_kwargs",
               "student.encoder_kwargs")


# --- config -----------------------------------------------------------------------------------
def _merge(base: DictConfig, other, source: str) -> DictConfig:
    try:
        return OmegaConf.merge(base, other)
    except (ConfigKeyError, ConfigAttributeError) as err:
        key = f"{err.full_key}" if getattr(err, "full_key", None) else str(err)
        raise ValueError(
            f"{source}: unknown config key '{key}'; the valid keys are in {PRESET_DIR / 'default.yaml'}"
        ) from None


def load_config(files: Sequence[str] = (), overrides: Sequence[str] = ()) -> DictConfig:
    """default.yaml, then preset files (a bare name means experiments/kd/<name>.yaml), then key=value."""
    cfg = OmegaConf.load(PRESET_DIR / "default.yaml")
    OmegaConf.set_struct(cfg, True)
    for key in _OPEN_NODES:
        OmegaConf.set_struct(OmegaConf.select(cfg, key), False)
    for f in files:
        path = Path(f) if Path(f).suffix in (".yaml", ".yml") else PRESET_DIR / f"{f}.yaml"
        if not path.exists():
            raise FileNotFoundError(f"distill preset {path} not found (presets: {sorted(p.stem for p in PRESET_DIR.glob('*.yaml'))})")
        cfg = _merge(cfg, OmegaConf.load(path), str(path))
    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise ValueError(f"overrides must be key=value, got {bad}")
    return _merge(cfg, OmegaConf.from_dotlist(list(overrides)), "command line")


# --- data -------------------------------------------------------------------------------------
def build_loaders(cfg: DictConfig):
    """Train / val DataLoaders of the semantic labels, and the number of classes."""
    from lhl.data.sources import DATASETS

    cls = DATASETS.get(cfg.data.name)
    options = OmegaConf.to_container(cfg.data.get(cfg.data.name, {}) or {}, resolve=True)
    info = cls.task_info(**options) if hasattr(cls, "task_info") else {}
    if "semantic" not in info:
        raise ValueError(f"data.name={cfg.data.name}: the dataset has no 'semantic' task")
    num_classes = int(info["semantic"][1])
    sets = {s: cls(root=cfg.data.root, split=s, tasks=["semantic"], **options) for s in ("train", "val")}
    gen = torch.Generator().manual_seed(int(cfg.run.seed))
    kw = dict(batch_size=int(cfg.data.batch_size), num_workers=int(cfg.data.num_workers))
    train = DataLoader(sets["train"], shuffle=True, drop_last=len(sets["train"]) > kw["batch_size"],
                       generator=gen, **kw)
    return train, DataLoader(sets["val"], shuffle=False, **kw), num_classes


# --- models -----------------------------------------------------------------------------------
def model_spec(section: DictConfig, num_classes: int, img_size) -> Dict:
    """The build_segmenter kwargs of a teacher / student config section."""
    spec = OmegaConf.to_container(section, resolve=True)
    spec.update(num_classes=num_classes, img_size=list(img_size))
    return spec


def load_teacher(path: Path) -> Segmenter:
    """A segmenter saved by `save_model` (its spec and weights)."""
    blob = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(blob, dict) or "spec" not in blob or "state_dict" not in blob:
        raise ValueError(f"run.teacher_ckpt={path}: not a teacher checkpoint of `lhl distill`")
    model = build_segmenter(**blob["spec"])
    model.load_state_dict(blob["state_dict"])
    return model


def save_model(model: Segmenter, spec: Dict, path: Path) -> None:
    atomic_torch_save({"spec": spec, "state_dict": model.state_dict()}, path)


def build_distiller(kind: str, cfg: DictConfig, teacher: Optional[Segmenter], student: Segmenter) -> nn.Module:
    """The loss module of one method: none | kd | cwd | heteroakd."""
    if kind == "none":
        return StudentOnly()
    if kind == "kd":
        return LogitKD(**cfg.kd.kd)
    if kind == "cwd":
        return ChannelWiseKD(**cfg.kd.cwd)
    if kind == "heteroakd":
        h = OmegaConf.to_container(cfg.kd.heteroakd, resolve=True)
        return HeteroAKD(
            student.num_classes, stage_channels(teacher, h["teacher_stages"]),
            stage_channels(student, h["student_stages"]), **h,
        )
    raise ValueError(f"run.kd='{kind}': choose one of {', '.join(KD_METHODS)} or all")


# --- training ---------------------------------------------------------------------------------
def _trainer(cfg: DictConfig, root: Path, name: str, steps: int) -> pl.Trainer:
    return pl.Trainer(
        default_root_dir=str(root / name), max_steps=steps, max_epochs=-1,
        accelerator=cfg.train.accelerator, devices=cfg.train.devices, precision=cfg.train.precision,
        logger=CSVLogger(str(root), name=name, version=""), enable_checkpointing=False,
        enable_progress_bar=bool(cfg.train.progress_bar), enable_model_summary=False,
        log_every_n_steps=int(cfg.train.log_every_n_steps), num_sanity_val_steps=0, limit_val_batches=0,
    )


def _evaluate(cfg: DictConfig, module: DistillModule, val, root: Path, name: str) -> Dict[str, float]:
    trainer = pl.Trainer(accelerator=cfg.train.accelerator, devices=1, logger=False,
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


def _module(cfg, student, distiller, teacher, steps, spec) -> DistillModule:
    return DistillModule(student, distiller, teacher, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay,
                         optimizer=cfg.train.optimizer, max_steps=steps, spec=spec)


def _reseed(cfg: DictConfig, train: DataLoader) -> None:
    """Same initialisation and the same batch order for every model of the run."""
    pl.seed_everything(int(cfg.run.seed), workers=True)
    train.generator.manual_seed(int(cfg.run.seed))


def _params(model: nn.Module) -> float:
    return round(sum(p.numel() for p in model.parameters()) / 1e6, 3)


def teacher_stage(cfg: DictConfig, ckpt: Path, train, val, root: Path, num_classes: int, img_size):
    """The teacher: loaded from `ckpt` when it exists, else trained and saved there; and its metrics."""
    if ckpt.exists():
        teacher, steps, spec = load_teacher(ckpt), 0, None
        if teacher.num_classes != num_classes:
            raise ValueError(f"run.teacher_ckpt={ckpt}: the teacher predicts {teacher.num_classes} classes, "
                             f"data.name={cfg.data.name} has {num_classes}")
    else:
        _reseed(cfg, train)
        spec = model_spec(cfg.teacher, num_classes, img_size)
        teacher, steps = build_segmenter(**spec), int(cfg.train.teacher_steps)
    module = _module(cfg, teacher, StudentOnly(), None, steps, spec)
    result = {"model": teacher.name, "params_m": _params(teacher), "checkpoint": str(ckpt),
              **train_model(cfg, module, train, val, root, "teacher", steps)}
    if spec is not None:
        save_model(teacher, spec, ckpt)
    return teacher, result


def run(cfg: DictConfig) -> Path:
    """The whole comparison; returns the run folder."""
    kinds = list(KD_METHODS) if cfg.run.kd == "all" else [str(cfg.run.kd)]
    for k in kinds:
        if k not in KD_METHODS:
            raise ValueError(f"run.kd='{k}': choose one of {', '.join(KD_METHODS)} or all")
    name = cfg.run.name or f"{cfg.data.name}_{cfg.teacher.name}_to_{cfg.student.name}"
    root = Path(cfg.run.out_dir) / name
    ckpt = Path(cfg.run.teacher_ckpt) if cfg.run.teacher_ckpt else root / "teacher.ckpt"
    if cfg.run.teacher_ckpt and not ckpt.exists():
        raise FileNotFoundError(f"run.teacher_ckpt={ckpt}: no such file (leave it unset to train a teacher)")
    root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(root / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    train, val, num_classes = build_loaders(cfg)
    img_size = val.dataset[0]["image"].shape[-2:]
    results = {}
    teacher, results["teacher"] = teacher_stage(cfg, ckpt, train, val, root, num_classes, img_size)

    spec, steps = model_spec(cfg.student, num_classes, img_size), int(cfg.train.student_steps)
    for kind in kinds:
        _reseed(cfg, train)
        student = build_segmenter(**spec)
        distiller = build_distiller(kind, cfg, teacher, student)
        module = _module(cfg, student, distiller, teacher if kind != "none" else None, steps, spec)
        results[kind] = {"model": student.name, "params_m": _params(student),
                         **train_model(cfg, module, train, val, root, kind, steps)}
        write_results(root, results, cfg)
    return root


# --- results ----------------------------------------------------------------------------------
def render_markdown(results: Dict, cfg: DictConfig) -> str:
    """One table: teacher, then each student run; mIoU and pixel accuracy in percent, and the
    mIoU gain over the student trained alone (points) when that run is there."""
    alone = results.get("none", {}).get("miou")
    lines = [
        f"# Distillation on {cfg.data.name}: {results.get('teacher', {}).get('model', cfg.teacher.name)} -> "
        f"{cfg.student.name}", "",
        "| run | model | params (M) | mIoU (%) | pixel acc (%) | mIoU vs alone | time (s) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for key, r in results.items():
        gain = f"{100 * (r['miou'] - alone):+.2f}" if alone is not None and key != "teacher" else ""
        lines.append(
            f"| {LABELS.get(key, key)} | {r['model']} | {r['params_m']:.3f} | {100 * r['miou']:.2f} | "
            f"{100 * r['pixacc']:.2f} | {gain} | {r['train_s']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def write_results(root: Path, results: Dict, cfg: DictConfig) -> None:
    atomic_write_json(root / "results.json", results)
    atomic_write_text(root / "results.md", render_markdown(results, cfg))


# --- command line -----------------------------------------------------------------------------
def parse_args(argv: List[str]):
    p = argparse.ArgumentParser(prog="lhl distill", description=__doc__.splitlines()[0])
    p.add_argument("--kd", choices=KD_METHODS + ("all",), help="method(s) to train (run.kd)")
    p.add_argument("--teacher", help="teacher segmenter name (teacher.name)")
    p.add_argument("--student", help="student segmenter name (student.name)")
    p.add_argument("--data", help="dataset: synthetic | nyuv2 | cityscapes (data.name); also loads "
                   "experiments/kd/<data>.yaml first when it exists")
    p.add_argument("--out", help="run folder parent (run.out_dir)")
    p.add_argument("--name", help="run folder name (run.name)")
    p.add_argument("--teacher-ckpt", help="teacher.ckpt of an earlier `lhl distill` run (run.teacher_ckpt)")
    p.add_argument("--config", action="append", default=[], help="preset: experiments/kd/NAME.yaml or a path")
    p.add_argument("overrides", nargs="*", help="key=value config overrides")
    return p.parse_args(argv)


def config_from_args(args) -> DictConfig:
    """The run's config: default.yaml, the --data preset, --config presets, the flags, key=value."""
    flags = {"run.kd": args.kd, "teacher.name": args.teacher, "student.name": args.student,
             "data.name": args.data, "run.out_dir": args.out, "run.name": args.name,
             "run.teacher_ckpt": args.teacher_ckpt}
    overrides = [f"{k}={v}" for k, v in flags.items() if v] + list(args.overrides)
    data_preset = [args.data] if args.data and (PRESET_DIR / f"{args.data}.yaml").exists() else []
    return load_config(data_preset + list(args.config), overrides)


def cli(argv: Optional[List[str]] = None) -> int:
    """`lhl distill ...`: returns the exit code."""
    import sys

    cfg = config_from_args(parse_args(sys.argv[1:] if argv is None else list(argv)))
    root = run(cfg)
    print("\n" + (root / "results.md").read_text())
    print(f"run folder: {root}")
    return 0
