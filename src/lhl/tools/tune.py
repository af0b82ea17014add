"""`lhl tune`: each method's stability knob chosen on the tuning stream, never on the reported split.

For every method of `methods=` the grid of its declared knob (`Method.stability`: five log-spaced
values from the finetune end), on `seeds=` tuning seeds (default 100 101), plus finetune on the same
seeds: every run is an ordinary `lhl run` with `data.stream=tune` (`lhl.data.tuning`), so finished
runs are reused and killed ones resume. The objective is declared before anything runs
(`objective=delta`: the final Δ against finetune; `objective=plasticity_decay p=0.2`: De Lange et
al.'s stability decay). When the chosen value sits on the grid's edge the grid is widened by one
log step and run again, `widen=` times at most. Written into `<out>/<seq>/tune/<hash>/`:
`tuned.yaml`, `tune.md`, `frontier.png`, `delta_vs_weight.png`; the choices are also merged into
`<out>/<seq>/tuned.yaml`, which `lhl compare ... tuned=FILE` and `lhl paper ... tuned=FILE` take.
"""
from __future__ import annotations

import hashlib
import json
import shlex
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from lhl.config import ConfigError, load_config
from lhl.core.io import atomic_write_text
from lhl.core.registry import METHODS
from lhl.runs.identity import run_folder_of
from lhl.reporting.tuning import OBJECTIVES, on_edge, score_point, select
from lhl.tools.runs import run_status

USAGE = """usage: lhl tune seq=NAME methods="m1 m2 ..." [seeds="100 101"] [objective=delta|plasticity_decay]
                [p=0.2] [widen=2] [grid.METHOD=v1,v2,...] [jobs=N] [aggregate=true] [slurm=true JOB_KEYS]
                [key=value ...]

  methods=            method presets with a declared stability knob (lhl list shows them); finetune,
                      joint, single_task and spg have none and are refused
  seeds=              tuning seeds (default 100 101); the data are the tuning stream (data.stream=tune)
  objective=delta     the grid value with the best mean final Δ against finetune (default)
  objective=plasticity_decay [p=0.2]   De Lange et al.: the most stable value whose new-task Δ
                      against finetune stays above -100 p %
  widen=N             add a log step past an edge winner, at most N times per method (default 2)
  grid.METHOD=v,...   replace a method's default grid (its first value should be the finetune end)
  jobs=N              N runs at a time, one thread each share (as lhl compare)
  aggregate=true      never train: select from the finished runs (the missing ones are named)
  slurm=true          write and submit the grid as a job array (as lhl compare slurm=true); run
                      `lhl tune ... aggregate=true` when it is done (widening needs another round)
  key=value           any `lhl run` override, applied to every run
"""

DEFAULT_SEEDS = [100, 101]
REFERENCE = "finetune"


def _words(value: str) -> List[str]:
    return [w for w in shlex.split(value.replace(",", " ")) if w]


def parse(argv: List[str]) -> dict:
    opts = dict(seq=None, methods=[], seeds=list(DEFAULT_SEEDS), objective="delta", p=0.2, widen=2,
                grids={}, jobs=1, aggregate=False, slurm=False, rest=[], job_args=[])
    from lhl.tools.compare import parse_bool, parse_jobs
    from lhl.tools.compare_slurm import JOB_KEYS

    for arg in argv:
        key, _, value = arg.partition("=")
        if key == "seq":
            opts["seq"] = value or None
        elif key == "methods":
            opts["methods"] = _words(value)
        elif key == "seeds":
            try:
                opts["seeds"] = [int(s) for s in _words(value)]
            except ValueError:
                raise ConfigError(f"lhl tune: seeds={value!r}: give whole numbers, e.g. seeds=\"100 101\"") from None
        elif key == "objective":
            if value not in OBJECTIVES:
                raise ConfigError(f"lhl tune: objective={value!r}: choose one of {', '.join(OBJECTIVES)}")
            opts["objective"] = value
        elif key == "p":
            opts["p"] = float(value)
        elif key == "widen":
            if not value.isdigit():
                raise ConfigError(f"lhl tune: widen={value!r}: a whole number of extra grid points (e.g. 2)")
            opts["widen"] = int(value)
        elif key.startswith("grid."):
            try:
                opts["grids"][key[5:]] = sorted(float(v) for v in _words(value))
            except ValueError:
                raise ConfigError(f"lhl tune: {arg}: give numbers, e.g. grid.lwf=0,0.3,1,3,10") from None
        elif key == "jobs":
            opts["jobs"] = parse_jobs(value)
        elif key in ("aggregate", "slurm"):
            opts[key] = parse_bool(value)
        elif key in JOB_KEYS or key == "submit":
            opts["job_args"].append(arg)
        else:
            opts["rest"].append(arg)
    if not opts["seq"] or not opts["methods"]:
        raise ConfigError('lhl tune: give seq=NAME and methods="m1 m2 ..." (lhl tune --help)')
    unknown = sorted(set(opts["grids"]) - set(opts["methods"]))
    if unknown:
        raise ConfigError(f"lhl tune: grid.{unknown[0]}= names a method that is not in methods=")
    return opts


def knobs(opts: dict) -> Dict[str, object]:
    """{method preset: its Knob}; a method without one is refused, naming those that have one."""
    out = {}
    for m in opts["methods"]:
        cfg = load_config([], [f"seq={opts['seq']}", f"method={m}", *opts["rest"]])
        knob = METHODS.get(cfg.method.name).stability
        if knob is None:
            have = [n for n in METHODS if METHODS.get(n).stability is not None]
            raise ConfigError(
                f"lhl tune: method '{m}' declares no stability knob (Method.stability), so there is nothing "
                f"to tune; leave it out of methods= (compare runs it at its preset). Methods with a knob: "
                f"{', '.join(have)}")
        out[m] = knob
    return out


def run_args(opts: dict, method: str, seed: int, extra: List[str]) -> List[str]:
    return [f"seq={opts['seq']}", f"method={method}", f"seed={seed}", "data.stream=tune", *opts["rest"], *extra]


def plan(opts: dict, grids: Dict[str, List[float]], knob_of: Dict[str, object]) -> List[Tuple[str, List[str], object, Optional[float]]]:
    """[(label, args, config, value)]: finetune on every seed, then every method x value x seed."""
    out = []
    for seed in opts["seeds"]:
        args = run_args(opts, REFERENCE, seed, [])
        out.append((REFERENCE, args, load_config([], args), None))
    for m, values in grids.items():
        knob = knob_of[m]
        for v in values:
            extra = knob.overrides(v)
            for seed in opts["seeds"]:
                if knob.zero_is_finetune and v == 0.0:  # that point is finetune's run (Knob.zero_is_finetune)
                    args = run_args(opts, REFERENCE, seed, [])
                else:
                    args = run_args(opts, m, seed, extra)
                out.append((f"{m} {extra[0]}", args, load_config([], args), v))
    for _, _, cfg, _ in out:
        if cfg.data.stream != "tune":
            raise ConfigError("lhl tune: a run would read the reported split (data.stream is not tune); "
                              "do not override data.stream")
    return out


def tune_dir(opts: dict, grids: Dict[str, List[float]], cfg) -> Path:
    key = json.dumps({"methods": opts["methods"], "seeds": opts["seeds"], "objective": opts["objective"],
                      "p": opts["p"], "rest": opts["rest"], "grids": {m: opts["grids"].get(m) for m in grids}},
                     sort_keys=True)
    return Path(cfg.run.out_dir) / opts["seq"] / "tune" / hashlib.sha1(key.encode()).hexdigest()[:10]


def execute(configs, opts: dict, log_dir: Path) -> List[tuple]:
    """Train every planned run that is not finished; [(label, seed, exit code)] of those that failed."""
    todo, seen = [], set()
    for label, args, cfg, _ in configs:
        folder = run_folder_of(cfg).root
        s = run_status(folder)
        if (s is None or not s.finished) and folder not in seen:  # a finetune end shares finetune's run
            seen.add(folder)
            todo.append((label, args, cfg))
    if not todo:
        return []
    if opts["jobs"] > 1:
        from lhl.tools.compare_jobs import prepare, run_jobs

        prepare(todo)
        return run_jobs(todo, opts["jobs"], log_dir)
    from lhl.engine.runner import run

    for label, _, cfg in todo:
        print(f"\n##### tune: {opts['seq']} / {label} / seed {cfg.run.seed} (tuning stream)", flush=True)
        run(cfg)
    return []


def _widen(grid: List[float], knob, points: List[dict], chosen: float) -> Optional[float]:
    edge = on_edge(points, chosen)
    if edge is None:
        return None
    value = knob.beyond(grid, edge)
    return None if value is None or value in grid else value


def cli(argv: List[str]) -> int:
    if any(a in ("-h", "--help", "help") for a in argv):
        print(USAGE)
        return 0
    from lhl.reporting.render import machines_note
    from lhl.tools import tune_report as report
    from lhl.tools.tuned_file import merge_into

    opts = parse(argv)
    knob_of = knobs(opts)
    grids = {m: list(opts["grids"].get(m) or knob_of[m].grid) for m in opts["methods"]}
    widened: Dict[str, List[float]] = {m: [] for m in grids}
    configs = plan(opts, grids, knob_of)
    folder = tune_dir(opts, grids, configs[0][2])
    if opts["slurm"]:
        from lhl.tools.compare_slurm import write_array

        return write_array([c[:3] for c in configs], folder / "slurm", f"lhl-tune-{opts['seq']}-{folder.name}",
                           opts["job_args"], ["tune", *[a for a in argv if a.partition("=")[0] not in
                                                         ("slurm", "aggregate", "submit")]])
    print(f"lhl tune: {len(grids)} method(s) x {len(opts['seeds'])} tuning seed(s); objective "
          f"{opts['objective']}; folder {folder}", flush=True)
    failed: List[tuple] = []
    for round_ in range(opts["widen"] + 1):
        if not opts["aggregate"]:
            failed += execute(configs, opts, folder / "logs")
        by_method, refs, missing = report.collect(configs)
        entries, grow = {}, {}
        for m in grids:
            runs = by_method.get(m, {})
            if not runs or not refs:
                continue
            chosen, points = report.choose(runs, refs, opts["objective"], opts["p"])
            entries[m] = report.entry(m, knob_of[m], chosen, points, opts, grids[m], widened[m])
            extra = _widen(grids[m], knob_of[m], points, chosen)
            if extra is not None and round_ < opts["widen"] and not opts["aggregate"] and not missing:
                grow[m] = extra
        if not grow:
            break
        for m, v in grow.items():
            print(f"lhl tune: {m}: the choice sits on the grid's edge; adding method.{knob_of[m].option}={v:g}")
            grids[m] = sorted(grids[m] + [v])
            widened[m].append(v)
        configs = plan(opts, grids, knob_of)
    machines = machines_note([r.machines for rs in by_method.values() for v in rs.values() for r in v] +
                             [r.machines for r in refs])
    paths = report.write(folder, opts["seq"], entries, missing, "\n".join(machines))
    print("\n" + paths["md"].read_text(encoding="utf-8"))
    if entries:
        merged = merge_into(Path(configs[0][2].run.out_dir) / opts["seq"] / "tuned.yaml", opts["seq"], entries)
        print(f"tuned weights written to {paths['yaml']} and merged into {merged}\n"
              f"use them: lhl compare seq={opts['seq']} methods=\"...\" tuned={merged}")
    if failed:
        print("lhl tune: runs failed (their logs name the error): "
              + ", ".join(f"{label} seed {seed} (exit {c})" for label, seed, c in failed))
        return 1
    if missing or len(entries) < len(grids):
        print("lhl tune: some runs are not finished; the choice above uses the finished ones")
        return 1
    return 0
