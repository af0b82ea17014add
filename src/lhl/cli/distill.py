"""`lhl distill`: options (`kd=heteroakd` or `--kd heteroakd`, ...), presets and key.path=value
overrides into a config, then the run (`lhl.distill.run`)."""
from __future__ import annotations

import argparse
import sys
from typing import List, Optional

from omegaconf import DictConfig

from lhl.cli.common import flags
from lhl.distill.config import load_config, preset_dir
from lhl.distill.methods import kd_methods
from lhl.distill.run import run
from lhl.distill.seeds import parse_seeds, run_seeds
from lhl.runs.folder import RESULTS_MD


#: the command's own options (not config keys): `--name value` or `name=value`
OPTIONS = ("kd", "teacher", "student", "data", "out", "name", "teacher_ckpt", "seeds", "config")


def parse_args(argv: List[str]) -> argparse.Namespace:
    """The flags, presets and key=value overrides (in any order) of `lhl distill`."""
    p = argparse.ArgumentParser(
        prog="lhl distill",
        description="Train (or load) a teacher, then students alone / with each distiller (--kd), one table.",
    )
    p.add_argument("--kd", help=f"method(s) to train (run.kd): {', '.join(kd_methods())}, a comma-separated "
                   "list of them, or all")
    p.add_argument("--teacher", help="teacher segmenter name (teacher.name)")
    p.add_argument("--student", help="student segmenter name (student.name)")
    p.add_argument("--data", help="dataset: synthetic | nyuv2 | cityscapes (data.name); also loads "
                   "experiments/kd/<data>.yaml first when it exists")
    p.add_argument("--out", help="run folder parent (run.out_dir)")
    p.add_argument("--name", help="run folder name (run.name)")
    p.add_argument("--teacher-ckpt", help="teacher.ckpt of an earlier `lhl distill` run (run.teacher_ckpt)")
    p.add_argument("--seeds", help="run once per seed ('0 1 2 3 4' or 0,1,2,3,4), each in <name>_seed<k>, "
                   "then one table over the seeds with paired intervals: <out>/<name>_seeds.md")
    p.add_argument("--config", action="append", default=[], help="preset: experiments/kd/NAME.yaml or a path")
    p.add_argument("overrides", nargs="*", help="key=value config overrides")
    # key=value overrides may come before or after the options; an option may be written name=value
    return p.parse_intermixed_args(flags(argv, OPTIONS))


def config_from_args(args: argparse.Namespace) -> DictConfig:
    """The run's config: the schema, default.yaml, the --data preset, --config presets, the flags, key=value."""
    flags = {"run.kd": args.kd, "teacher.name": args.teacher, "student.name": args.student,
             "data.name": args.data, "run.out_dir": args.out, "run.name": args.name,
             "run.teacher_ckpt": args.teacher_ckpt}
    overrides = [f"{k}={v}" for k, v in flags.items() if v] + list(args.overrides)
    data_preset = [args.data] if args.data and (preset_dir() / f"{args.data}.yaml").exists() else []
    return load_config(data_preset + list(args.config), overrides)


def cli(argv: Optional[List[str]] = None) -> int:
    """`lhl distill ...`: returns the exit code."""
    args = parse_args(sys.argv[1:] if argv is None else list(argv))
    cfg, seeds = config_from_args(args), parse_seeds(args.seeds)
    if seeds is not None:
        summary = run_seeds(cfg, seeds, run)
        print("\n" + summary.read_text())
        print(f"summary: {summary}")
        return 0
    root = run(cfg)
    print("\n" + (root / RESULTS_MD).read_text())
    print(f"run folder: {root}")
    return 0
