"""`lhl run [CONFIG.yaml ...] [key=value ...] [-m key=v1,v2] [--print-config]`: a lifelong run."""
from __future__ import annotations

from typing import List

from lhl.cli.common import show_help

USAGE = """usage: lhl run [CONFIG.yaml ...] [key=value ...] [-m key=v1,v2,...] [--print-config]

Composes the typed schema, experiments/seq/<seq>.yaml, experiments/method/<method>.yaml, the YAML
files given, then the key=value overrides, and runs the sequence into
<run.out_dir>/<seq>/<method>/<default | hash of the overrides>/seed<k> (resumed if it exists).

  seq=NAME method=NAME        presets (lhl list shows them)
  seed=N gpus=N nodes=N logger=csv|wandb|tensorboard|none name=RUN_NAME out=OUT_DIR
  section.key=value           any config key, e.g. train.epochs=5 data.batch_size=8 method.new=1
  -m key=v1,v2,...            multirun: one run per value (repeat -m for every combination)
  --print-config              print the resolved config as YAML (and its run folder), then exit

A bad key or value is one line naming it (exit 2); a failure while training keeps its traceback
(exit 1), which is also appended to <run folder>/run.log.

example: lhl run seq=synthetic_small_s1 method=had train.max_steps=2 -m method.new=1,3
"""


def cli(argv: List[str]) -> int:
    if show_help(USAGE, argv):
        return 0
    from lhl.config import ConfigError, load_config, to_yaml
    from lhl.config.sweep import expand, split_multirun
    from lhl.runs.identity import run_folder_of

    show = "--print-config" in argv
    argv, sweeps = split_multirun([a for a in argv if a != "--print-config"])
    files = [a for a in argv if a.endswith((".yaml", ".yml")) and "=" not in a]
    overrides = [a for a in argv if a not in files]
    configs = [load_config(files, o) for o in expand(overrides, sweeps)]  # all checked before any trains
    folders = [run_folder_of(cfg).root for cfg in configs]
    if len(set(folders)) < len(folders):
        raise ConfigError(f"-m: several runs would share the folder {folders[0]} (drop name=: each "
                          "configuration gets its own folder by default)")
    if show:
        for cfg, folder in zip(configs, folders):
            print(f"# run folder: {folder}\n{to_yaml(cfg)}", end="---\n" if len(configs) > 1 else "")
        return 0
    from lightning.pytorch.utilities import rank_zero_only

    from lhl.core.errors import USER_ERRORS
    from lhl.engine.requeue import Requeued
    from lhl.engine.runner import run
    from lhl.reporting.render import render_markdown
    from lhl.runs.results import Results

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
