"""`lhl distill`: train (or load) a teacher, then students alone / KD / CWD / HeteroAKD, one table.

The run folder gets the resolved `config.yaml`, `teacher.ckpt` (reused when present), one CSV log
folder per model, and `results.json` + `results.md` (mIoU and pixel accuracy on the val set). The
table keeps the rows of earlier runs in the folder made with the same config and teacher.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import lightning.pytorch as pl
import torch
from lightning.pytorch.loggers import CSVLogger
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError
from torch import nn
from torch.utils.data import DataLoader

from lhl.distill.baselines import ChannelWiseKD, LogitKD, StudentOnly
from lhl.distill.heteroakd import HeteroAKD, stage_channels
from lhl.distill.module import DistillModule
from lhl.distill.segmenters import Segmenter, build_segmenter
from lhl.core.io import atomic_torch_save, atomic_write_json, atomic_write_text

PRESET_DIR = Path(__file__).resolve().parents[3] / "experiments" / "kd"
KD_METHODS = ("none", "kd", "cwd", "heteroakd")
LABELS = {"teacher": "teacher", "none": "student alone", "kd": "logit KD", "cwd": "CWD",
          "heteroakd": "HeteroAKD"}
#: config nodes whose keys are free (dataset options, timm kwargs)
_OPEN_NODES = ("data.synthetic", "data.nyuv2", "data.cityscapes", "teacher.encoder_kwargs",
               "student.encoder_kwargs")
#: keys that do not change a student's numbers (besides run.* and the teacher, identified by its checkpoint)
_NOT_IN_DIGEST = ("teacher_steps", "progress_bar", "log_every_n_steps")


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
    spec.update(num_classes=num_classes, img_size=[int(s) for s in img_size])
    return spec


def teacher_mismatch(stored: Dict, cfg: DictConfig, num_classes: int) -> List[str]:
    """The keys where a checkpoint's teacher spec differs from cfg.teacher (`pretrained` aside) or the data."""
    wanted = OmegaConf.to_container(cfg.teacher, resolve=True)
    diffs = [f"teacher.{k} (checkpoint {stored.get(k)!r}, config {v!r})"
             for k, v in wanted.items() if k != "pretrained" and stored.get(k) != v]
    if stored.get("num_classes") != num_classes:
        diffs.append(f"number of classes (checkpoint {stored.get('num_classes')}, "
                     f"data.name={cfg.data.name} has {num_classes})")
    return diffs


def load_teacher(path: Path, cfg: Optional[DictConfig] = None, num_classes: Optional[int] = None) -> Segmenter:
    """A segmenter saved by `save_model`, checked against cfg.teacher and `num_classes` when given."""
    # the blob holds only a spec of primitives and a state_dict of tensors: weights_only suffices
    blob = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(blob, dict) or "spec" not in blob or "state_dict" not in blob:
        raise ValueError(f"teacher checkpoint {path}: not a teacher checkpoint of `lhl distill`")
    if cfg is not None:
        diffs = teacher_mismatch(blob["spec"], cfg, num_classes)
        if diffs:
            raise ValueError(
                f"teacher checkpoint {path} does not match this run's config: {'; '.join(diffs)}. "
                f"Delete {path} to train a new teacher, or change run.name (another run folder) or "
                "run.teacher_ckpt (another teacher), or set the teacher.* keys to the checkpoint's"
            )
    # pretrained weights would be overwritten at once (and fetching them fails offline)
    model = build_segmenter(**{**blob["spec"], "pretrained": False}, key="teacher")
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
            student.num_classes, stage_channels(teacher, h["teacher_stages"], "teacher_stages"),
            stage_channels(student, h["student_stages"], "student_stages"), **h,
        )
    raise ValueError(f"run.kd='{kind}': choose one of {', '.join(KD_METHODS)} or all")


def devices(cfg: DictConfig):
    """train.devices as Lightning takes it; one device only, since results.json and teacher.ckpt
    are written without rank-zero guards."""
    value = cfg.train.devices
    value = OmegaConf.to_container(value) if isinstance(value, ListConfig) else value
    if str(len(value) if isinstance(value, list) else value) != "1":
        raise ValueError(
            f"train.devices={value}: `lhl distill` runs on one device; set train.devices=1 "
            "(or a one-element list such as [1] to pick a GPU)"
        )
    return value


# --- training ---------------------------------------------------------------------------------
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
    if spec is not None:
        save_model(teacher, spec, ckpt)
    return result


def file_digest(path: Path) -> str:
    """The first 16 hex digits of the file's SHA-256: the identity of a teacher checkpoint."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def config_digest(cfg: DictConfig, kind: str) -> str:
    """Hash of the config a student row of `kind` depends on: data, student, training, seed and
    kd.<kind> (not the teacher section, identified by its checkpoint, nor run.kd / paths / logging)."""
    c = OmegaConf.to_container(cfg, resolve=True)
    relevant = {
        "seed": c["run"]["seed"], "student": c["student"], "kd": c["kd"].get(kind),
        "data": {k: v for k, v in c["data"].items() if k != "num_workers"},
        "train": {k: v for k, v in c["train"].items() if k not in _NOT_IN_DIGEST},
    }
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]


def earlier_rows(root: Path, cfg: DictConfig, teacher_id: str) -> Dict:
    """Student rows of earlier runs in `root` made with this config and teacher; others dropped (noted)."""
    path = root / "results.json"
    if not path.exists():
        return {}
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        print(f"{path}: unreadable ({err}); starting a new table")
        return {}
    kept = {}
    for kind in KD_METHODS:
        row = old.get(kind)
        if not isinstance(row, dict):
            continue
        why = None
        if row.get("config_hash") != config_digest(cfg, kind):
            why = "it was made with another config (data, student, train, run.seed or kd." + kind + ")"
        elif kind != "none" and row.get("teacher_id") != teacher_id:
            why = "it was made with another teacher checkpoint"
        if why:
            print(f"{path}: dropping the earlier '{LABELS[kind]}' row: {why}")
        else:
            kept[kind] = row
    return kept


def run(cfg: DictConfig) -> Path:
    """The whole comparison; returns the run folder."""
    kinds = list(KD_METHODS) if cfg.run.kd == "all" else [str(cfg.run.kd)]
    for k in kinds:
        if k not in KD_METHODS:
            raise ValueError(f"run.kd='{k}': choose one of {', '.join(KD_METHODS)} or all")
    devices(cfg)
    name = cfg.run.name or f"{cfg.data.name}_{cfg.teacher.name}_to_{cfg.student.name}"
    root = Path(cfg.run.out_dir) / name
    ckpt = Path(cfg.run.teacher_ckpt) if cfg.run.teacher_ckpt else root / "teacher.ckpt"
    if cfg.run.teacher_ckpt and not ckpt.exists():
        raise FileNotFoundError(f"run.teacher_ckpt={ckpt}: no such file (leave it unset to train a teacher)")
    train, val, num_classes = build_loaders(cfg)
    img_size = val.dataset[0]["image"].shape[-2:]
    teacher, teacher_spec = prepare_teacher(cfg, ckpt, train, num_classes, img_size)
    spec, steps = model_spec(cfg.student, num_classes, img_size), int(cfg.train.student_steps)
    check_students(cfg, kinds, teacher, spec)

    root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(root / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    results = {"teacher": teacher_stage(cfg, teacher, teacher_spec, ckpt, train, val, root)}
    teacher_id = results["teacher"]["teacher_id"] = file_digest(ckpt)
    results.update(earlier_rows(root, cfg, teacher_id))
    write_results(root, results, cfg)
    for kind in kinds:
        _reseed(cfg, train)
        student = build_segmenter(**spec, key="student")
        distiller = build_distiller(kind, cfg, teacher, student)
        module = _module(cfg, student, distiller, teacher if kind != "none" else None, steps)
        results[kind] = {"model": student.name, "params_m": _params(student),
                         **train_model(cfg, module, train, val, root, kind, steps),
                         "config_hash": config_digest(cfg, kind),
                         "teacher_id": teacher_id if kind != "none" else None}
        write_results(root, results, cfg)
    return root


# --- results ----------------------------------------------------------------------------------
def render_markdown(results: Dict, cfg: DictConfig, root: Optional[Path] = None) -> str:
    """One table: teacher, then each student run; mIoU and pixel accuracy in percent, and the
    mIoU gain over the student trained alone (points) when that run is there; then the missing rows."""
    alone = results.get("none", {}).get("miou")
    lines = [
        f"# Distillation on {cfg.data.name}: {results.get('teacher', {}).get('model', cfg.teacher.name)} -> "
        f"{cfg.student.name}", "",
        "| run | model | params (M) | mIoU (%) | pixel acc (%) | mIoU vs alone | time (s) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for key in ("teacher",) + KD_METHODS:
        if key not in results:
            continue
        r = results[key]
        gain = f"{100 * (r['miou'] - alone):+.2f}" if alone is not None and key != "teacher" else ""
        lines.append(
            f"| {LABELS[key]} | {r['model']} | {r['params_m']:.3f} | {100 * r['miou']:.2f} | "
            f"{100 * r['pixacc']:.2f} | {gain} | {r['train_s']:.1f} |"
        )
    missing = [k for k in KD_METHODS if k not in results]
    if missing:
        config = (root / "config.yaml") if root is not None else "<run folder>/config.yaml"
        lines += ["", f"Missing rows: {', '.join(LABELS[k] for k in missing)}. To add them (same config, "
                  "same teacher), run:", ""]
        lines += [f"    lhl distill --config {config} --kd {k}" for k in missing]
        lines += ["", f"(or `make distill KD={missing[0]} ARGS=\"--config {config}\"`, and so on)."]
    return "\n".join(lines) + "\n"


def write_results(root: Path, results: Dict, cfg: DictConfig) -> None:
    atomic_write_json(root / "results.json", results)
    atomic_write_text(root / "results.md", render_markdown(results, cfg, root))


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
    return p.parse_intermixed_args(argv)  # key=value overrides may come before or after flags


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
