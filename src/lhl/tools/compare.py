"""`lhl compare`: several methods and seeds of one sequence, then one comparison table and plot.

Each (method, seed[, swept value]) is an ordinary run folder (so finished runs are reused, killed
ones resume); the table holds mean ± std over seeds after the last phase, Δ against a reference
method and forgetting, written as `compare.md`, `compare.json` and `compare.png` into the
comparison's own folder `<out>/<seq>/compare/<hash of its run folders and ref>/` (printed at the
end). `aggregate=true` (or `--aggregate-only`) never trains: it reads the runs that are finished
and names those missing or unfinished; `runs="GLOB ..."` aggregates given run folders;
`slurm=true` writes (and submits) a job array of the runs plus a dependent aggregation job;
`jobs=N` runs them as N local processes side by side (`compare_jobs`).
"""
from __future__ import annotations

import glob
import hashlib
import json
import shlex
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from lhl.config import ConfigError, load_config
from lhl.config.sweep import parse_sweep
from lhl.core.io import atomic_write_json, atomic_write_text
from lhl.runs.folder import RunFolder
from lhl.runs.identity import run_folder_of
from lhl.reporting.plots import plot_compare
from lhl.reporting.aggregate import compare
from lhl.reporting.comparison import COMPARE_JSON
from lhl.tools.runs import run_status

USAGE = """usage: lhl compare seq=NAME methods="m1 m2 ..." [seeds="0 1 2"] [ref=METHOD] [tuned=FILE] [sweep=key=v1,v2]
                   [jobs=N] [aggregate=true | --aggregate-only] [slurm=true JOB_KEYS] [key=value ...]
       lhl compare runs="GLOB ..." [ref=LABEL] [out=DIR]

  seq= methods= seeds=    the runs: one per method x seed (seeds= absent: the preset's run.seeds, else run.seed)
  ref=METHOD              Δ against this method's runs (added to the runs when not in methods=)
  sweep=key=v1,v2         one run per method x seed x value (labels "method key=value")
  tuned=FILE              each method at its stability weight chosen by `lhl tune` (FILE: its tuned.yaml;
                          methods it does not list run at their presets)
  jobs=N                  N runs at a time, each its own `lhl run` process on 1/N of the threads
                          (logs in <compare folder>/logs/); on a CPU machine two single-thread runs
                          finish a table sooner than one two-thread run at a time (default 1: in turn)
  aggregate=true          never train: read the finished runs, name the missing / unfinished ones
  runs="GLOB ..."         aggregate these run folders (e.g. runs="runs/synthetic_s1/*/default/seed*");
                          labels: the method preset, plus the overrides folder where one method has several
  slurm=true              write one sbatch job array (one `lhl run` per method x seed) and an
                          aggregation job that starts after it (afterany); job keys as in `lhl slurm`:
                          gpus= nodes= time= partition= account= cpus_per_task= mem= template= submit=
  key=value               any `lhl run` override, applied to every run
"""


def _words(value: str) -> List[str]:
    return [w for w in shlex.split(value.replace(",", " ")) if w]


def parse_bool(value: str) -> bool:
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"'{value}' is not true or false")


def parse_jobs(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise ConfigError(f"compare: jobs={value!r}: give the number of runs at a time, a whole number >= 1 "
                          "(e.g. jobs=2)")
    return int(value)


def parse(argv: List[str]) -> dict:
    """compare's own keys, and the rest (overrides for every run) in order."""
    opts = dict(seq=None, methods=[], seeds=[None], ref=None, sweep=None, aggregate=False, runs=[],
                slurm=False, out=None, jobs=1, tuned=None, rest=[])
    for arg in argv:
        key, _, value = arg.partition("=")
        if arg == "--aggregate-only":
            opts["aggregate"] = True
        elif key in ("seq", "ref"):
            opts[key] = value or None
        elif key in ("methods", "seeds", "runs"):
            opts[key] = _words(value) or ([None] if key == "seeds" else [])
        elif key == "sweep":
            opts["sweep"] = parse_sweep(value, "sweep=")
        elif key in ("aggregate", "slurm"):
            opts[key] = parse_bool(value)
        elif key == "jobs":
            opts["jobs"] = parse_jobs(value)
        elif key == "tuned":
            opts["tuned"] = value or None
        elif key == "out":  # run.out_dir here and in every run (not `lhl slurm`'s script path)
            opts["out"] = value
            opts["rest"].append(f"run.out_dir={value}")
        else:
            opts["rest"].append(arg)
    return opts


def plan(opts: dict) -> List[Tuple[str, List[str], object]]:
    """[(label, `lhl run` arguments, config)] of every run, each composed and checked before anything trains."""
    seq, methods, ref = opts["seq"], list(opts["methods"]), opts["ref"]
    if not seq or not methods:
        raise ConfigError('compare: give seq=NAME and methods="m1 m2 ..." (seeds="0 1 2" optional), '
                          'or runs="GLOB ..." (lhl compare --help)')
    if ref and ref not in methods:
        methods.append(ref)
    values = [None] if opts["sweep"] is None else opts["sweep"][1]
    tuned: Dict[str, List[str]] = {}
    if opts.get("tuned"):
        from lhl.tools.tuned_file import load, overrides_for

        tuned = overrides_for(load(opts["tuned"]), seq, opts["tuned"])
    seeds = opts["seeds"]
    if seeds == [None]:  # no seeds=: the preset's run.seeds, else its run.seed
        preset_seeds = load_config([], [f"seq={seq}", *opts["rest"]]).run.seeds
        seeds = [None] if not preset_seeds else [int(s) for s in preset_seeds]
    out = []
    for method in methods:
        for value in ([None] if method == ref and ref not in opts["methods"] else values):
            extra = [] if value is None else [f"{opts['sweep'][0]}={value}"]
            label = method if value is None else f"{method} {extra[0]}"
            for seed in seeds:
                args = [f"seq={seq}", f"method={method}", *([f"seed={seed}"] if seed is not None else []),
                        *tuned.get(method, []), *opts["rest"], *extra]
                out.append((label, args, load_config([], args)))
    return out


def groups_from_globs(patterns: List[str]) -> Dict[str, List[Path]]:
    """{label: run folders} of the folders the patterns match (each holding a config.yaml)."""
    folders = sorted({Path(p) for pat in patterns for p in glob.glob(pat) if RunFolder(Path(p)).config.is_file()})
    if not folders:
        raise ConfigError(f"runs={' '.join(patterns)!r}: no run folder (with a config.yaml) matches")
    by_method: Dict[str, Dict[str, List[Path]]] = {}
    for f in folders:
        s = run_status(f)
        if s is not None:
            by_method.setdefault(s.method, {}).setdefault(f.parent.name, []).append(f)
    return {(m if len(keys) == 1 else f"{m} {k}"): fs
            for m, keys in by_method.items() for k, fs in keys.items()}


def compare_dir(root: Path, seq: str, groups: Dict[str, List[Path]], ref: Optional[str]) -> Path:
    """`<root>/<seq>/compare/<hash>`: one folder per set of runs and reference."""
    key = json.dumps({"runs": {k: sorted(map(str, v)) for k, v in groups.items()}, "ref": ref}, sort_keys=True)
    return Path(root) / seq / "compare" / hashlib.sha1(key.encode()).hexdigest()[:10]


def aggregate(groups: Dict[str, List[Path]], ref: Optional[str], out_dir: Path) -> int:
    """The table over the finished runs of `groups`; the missing / unfinished ones are named."""
    finished: Dict[str, List[Path]] = {}
    missing = []
    for label, folders in groups.items():
        for f in folders:
            s = run_status(f)
            if s is not None and s.finished:
                finished.setdefault(label, []).append(f)
            else:
                state = "missing" if s is None else f"unfinished, phases {len(s.done)}/{s.total or '?'}"
                missing.append(f"{f} ({label}: {state})")
    if missing:
        print("runs not finished (left out of the table):\n" + "\n".join(f"  {m}" for m in missing))
    empty = [label for label in groups if label not in finished]
    if empty or (ref and ref not in finished):
        print(f"lhl compare: no finished run of {sorted(set(empty + ([ref] if ref and ref not in finished else [])))}; "
              "nothing written (train them first: lhl compare without aggregate=true)")
        return 1
    markdown, table = compare(finished, ref=finished.get(ref) if ref else None)
    table.missing = missing
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "compare.md", markdown)
    atomic_write_json(out_dir / COMPARE_JSON, table.to_dict())
    plot_compare(table, out_dir / "compare.png")
    print("\n" + markdown)
    print(f"comparison written to {out_dir}")
    return 0


def write_slurm(argv: List[str]) -> int:
    """`slurm=true`: the comparison's runs as one job array plus its aggregation job."""
    from lhl.tools.compare_slurm import JOB_KEYS, write_array

    job_args = [a for a in argv if a.partition("=")[0] in JOB_KEYS | {"submit"}]
    compare_args = [a for a in argv if a.partition("=")[0] not in JOB_KEYS | {"submit", "slurm", "aggregate"}
                    and a != "--aggregate-only"]
    opts = parse(compare_args)
    configs = plan(opts)
    groups: Dict[str, List[Path]] = {}
    for label, _, cfg in configs:
        groups.setdefault(label, []).append(run_folder_of(cfg).root)
    out = compare_dir(Path(configs[-1][2].run.out_dir), opts["seq"], groups, opts["ref"])
    code = write_array(configs, out / "slurm", f"lhl-compare-{opts['seq']}-{out.name}", job_args,
                       ["compare", *compare_args])
    print(f"comparison folder: {out}")
    return code


def cli(argv: List[str]) -> int:
    if any(a in ("-h", "--help", "help") for a in argv):
        print(USAGE)
        return 0
    opts = parse(argv)
    if opts["runs"]:
        groups = groups_from_globs(opts["runs"])
        seqs = {run_status(f[0]).sequence for f in groups.values()}
        seq = seqs.pop() if len(seqs) == 1 else "mixed"
        return aggregate(groups, opts["ref"], compare_dir(Path(opts["out"] or "runs"), seq, groups, opts["ref"]))
    if opts["slurm"]:
        if opts["jobs"] > 1:
            raise ConfigError("compare: jobs= runs the comparison here, slurm=true submits each run as its "
                              "own job: give one of them")
        return write_slurm(argv)
    configs = plan(opts)
    groups: Dict[str, List[Path]] = {}
    for label, _, cfg in configs:
        groups.setdefault(label, []).append(run_folder_of(cfg).root)
    out_dir = compare_dir(Path(configs[-1][2].run.out_dir), opts["seq"], groups, opts["ref"])
    failed = []
    if not opts["aggregate"] and opts["jobs"] > 1:
        from lhl.tools.compare_jobs import prepare, run_jobs

        prepare(configs)
        failed = run_jobs(configs, opts["jobs"], out_dir / "logs")
    elif not opts["aggregate"]:
        from lhl.engine.runner import run

        for label, _, cfg in configs:
            print(f"\n##### compare: {opts['seq']} / {label} / seed {cfg.run.seed}", flush=True)
            run(cfg)
    code = aggregate(groups, opts["ref"], out_dir)
    if failed:
        print("lhl compare: runs failed (their logs name the error): "
              + ", ".join(f"{label} seed {seed} (exit {c})" for label, seed, c in failed))
        return 1
    return code
