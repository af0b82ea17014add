"""The `lhl` command: run, compare, report, curves, data, distill, bench, slurm, list, runs.

Every Make target is a thin wrapper over one of these sub-commands.
"""
from __future__ import annotations

import importlib
import sys
from typing import List

USAGE = """usage: lhl [--experiments DIR] <command> [args]    (lhl <command> --help: its own help)

commands:
  run [CONFIG.yaml ...] [key=value ...]   a lifelong run (seq=NAME method=NAME seed=N gpus=N ...)
  list                                    sequences, method presets, datasets, tasks, backbones, kd
  runs [OUT_DIR]                          run folders: sequence, method, overrides, seeds, phases
  compare [key=value ...]                 several methods and seeds of one sequence, one table
  tune seq=... methods="..." [seeds=...]  each method's stability weight, chosen on the tuning stream
  paper table=main|ablation seq=... [seeds=...]   the paper's tables (runs + compare + md/csv/tex)
  report RUN [--ref RUN] [--json OUT]     results, delta and forgetting of a run folder
  curves RUN [--out FILE]                 learning curves within each phase (eval.every_n_epochs)
  data synth --out DIR [...]              write a synthetic-rooms set (+ grid.png)
  data convert-nyuv2 --mat F --splits F --out DIR
  data convert-cityscapes --src DIR --out DIR
  distill [--kd ...] [key=value ...]      cross-architecture distillation (HeteroAKD and baselines)
  distill-study NAME.. [--ref NAME]       one distiller's row across `distill --seeds` sweeps, paired
  bench [--out FILE] [...]                training-step throughput of finetune / LwF / HAD
  bench-e2e [--seq S --method M] [k=v]    a whole sequence timed as lhl runs it and as the release does
  release-parity --release LOG.. --lhl RUN..  the HAD release and lhl side by side (final metrics per seed)
  slurm [key=value ...]                   write (and submit) an sbatch script

--experiments DIR: read presets (seq/, method/, kd/, slurm/) from DIR instead of the installed
ones (or set LHL_EXPERIMENTS=DIR).
"""

RUN_HELP = """usage: lhl run [CONFIG.yaml ...] [key=value ...] [-m key=v1,v2,...] [--print-config]

Composes the typed schema, experiments/seq/<seq>.yaml, experiments/method/<method>.yaml, the YAML
files given, then the key=value overrides, and runs the sequence into
<run.out_dir>/<seq>/<method>/<default | hash of the overrides>/seed<k> (resumed if it exists).

  seq=NAME method=NAME        presets (lhl list shows them)
  seed=N gpus=N nodes=N logger=csv|wandb|tensorboard|none name=RUN_NAME out=OUT_DIR
  section.key=value           any config key, e.g. train.epochs=5 data.batch_size=8 method.new=1
  -m key=v1,v2,...            multirun: one run per value (repeat -m for every combination)
  --print-config              print the resolved config as YAML (and its run folder), then exit

example: lhl run seq=synthetic_small_s1 method=had train.max_steps=2 -m method.new=1,3
"""

#: sub-command -> "module:function" taking argv and returning an exit code
COMMANDS = {
    "run": "lhl.cli:run_main",
    "compare": "lhl.tools.compare:cli",
    "tune": "lhl.tools.tune:cli",
    "paper": "lhl.tools.paper:cli",
    "report": "lhl.reporting.report_cli:cli",
    "curves": "lhl.cli.curves:cli",
    "distill": "lhl.distill.cli:cli",
    "distill-study": "lhl.distill.study:cli",
    "bench": "lhl.tools.bench:cli",
    "bench-e2e": "lhl.tools.bench_e2e:cli",
    "release-parity": "lhl.tools.release_parity:cli",
    "slurm": "lhl.tools.slurm:cli",
    "list": "lhl.tools.listing:cli",
    "runs": "lhl.cli.runs:cli",
}
DATA_COMMANDS = {
    "synth": "lhl.data.sources.synthetic:cli",
    "convert-nyuv2": "lhl.data.convert.nyuv2_mat:cli",
    "convert-cityscapes": "lhl.data.convert.cityscapes_official:cli",
}


def _resolve(target: str):
    module, func = target.split(":")
    return getattr(importlib.import_module(module), func)


def run_main(argv: List[str]) -> int:
    if any(a in ("-h", "--help", "help") for a in argv):
        print(RUN_HELP)
        return 0
    from lhl.config import load_config, to_yaml
    from lhl.config.sweep import expand, split_multirun
    from lhl.runs.identity import run_folder_of

    show = "--print-config" in argv
    argv, sweeps = split_multirun([a for a in argv if a != "--print-config"])
    files = [a for a in argv if a.endswith((".yaml", ".yml")) and "=" not in a]
    overrides = [a for a in argv if a not in files]
    configs = [load_config(files, o) for o in expand(overrides, sweeps)]  # all checked before any trains
    folders = [run_folder_of(cfg).root for cfg in configs]
    if len(set(folders)) < len(folders):
        from lhl.config import ConfigError

        raise ConfigError(f"-m: several runs would share the folder {folders[0]} (drop name=: each "
                          "configuration gets its own folder by default)")
    if show:
        for cfg, folder in zip(configs, folders):
            print(f"# run folder: {folder}\n{to_yaml(cfg)}", end="---\n" if len(configs) > 1 else "")
        return 0
    from lightning.pytorch.utilities import rank_zero_only

    from lhl.engine.runner import run
    from lhl.reporting.render import render_markdown
    from lhl.runs.results import Results
    from lhl.engine.requeue import Requeued
    from lhl.core.errors import USER_ERRORS

    done = []
    for cfg in configs:
        try:
            run_dir = run(cfg)
        except Requeued as stop:  # SLURM restarts the job; the finished work is saved
            print(f"lhl run: {stop}; stopping (exit 0)", flush=True)
            return 0
        except Exception as err:  # a failure while running: its traceback also goes to the run's log
            if not isinstance(err, USER_ERRORS):
                run_folder_of(cfg).log_failure(err)
            raise
        done.append(run_dir)
        if rank_zero_only.rank == 0:  # every DDP rank returns here: print once
            print("\n" + render_markdown(Results.load(run_dir)))
            print(f"run folder: {run_dir}")
    if len(done) > 1 and rank_zero_only.rank == 0:
        print("multirun folders:\n" + "\n".join(f"  {d}" for d in done))
    return 0


def _quiet_library_noise() -> None:
    """Drop two messages a user can do nothing about: Lightning's advertising tip at every Trainer
    and its own deprecation warning on newer torch (lightning/pytorch/utilities/_pytree.py)."""
    import logging
    import warnings

    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated")
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(
        lambda record: not str(record.getMessage()).startswith("💡 Tip")
    )


def _experiments_flag(argv: List[str]) -> List[str]:
    """`--experiments DIR` (anywhere): a user folder of presets, passed on as LHL_EXPERIMENTS."""
    import os

    out = []
    while argv:
        arg = argv.pop(0)
        if arg == "--experiments" and argv:
            os.environ["LHL_EXPERIMENTS"] = os.path.abspath(argv.pop(0))
        elif arg.startswith("--experiments="):
            os.environ["LHL_EXPERIMENTS"] = os.path.abspath(arg.split("=", 1)[1])
        else:
            out.append(arg)
    return out


def main(argv: List[str] | None = None) -> int:
    argv = _experiments_flag(list(sys.argv[1:] if argv is None else argv))
    _quiet_library_noise()
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    cmd, rest = argv[0], argv[1:]
    if cmd == "data":
        if not rest or rest[0] not in DATA_COMMANDS:
            asked = bool(rest) and rest[0] in ("-h", "--help", "help")
            print(USAGE + "\nlhl data <sub-command> --help: its options", file=sys.stdout if asked else sys.stderr)
            return 0 if asked else 2
        target, rest = DATA_COMMANDS[rest[0]], rest[1:]
    elif cmd in COMMANDS:
        target = COMMANDS[cmd]
    else:
        print(f"lhl: unknown command '{cmd}'\n\n{USAGE}", file=sys.stderr)
        return 2
    from lhl.core.errors import USER_ERRORS

    try:
        return int(_resolve(target)(rest) or 0)
    except USER_ERRORS as err:  # what the user typed or pointed at: one line; anything else keeps its traceback
        print(f"lhl {cmd}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
