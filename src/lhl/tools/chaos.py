"""A fault campaign: kill a short lifelong run at random moments, resume it, and check that its
final results.json is the uninterrupted run's, byte for byte.

    lhl dev chaos --faults 50 --seed 0            # make chaos CHAOS_FAULTS=50 CHAOS_SEED=0

1. A reference run, uninterrupted, in its own folder and with its own fresh data cache: its
   wall-clock length T (from the process start: imports, data generation, every phase's steps,
   evaluations, checkpoint writes, records) is the span the fault moments are drawn from.
2. Cycles: a fresh run folder and data cache; attempts of `lhl run` on it, each sent one signal at
   a moment drawn uniformly from [0, T] after its start (seeded by --seed): SIGKILL, SIGTERM or
   SIGUSR1 (under a fake SLURM job with a stub `scontrol`, so SIGUSR1 is a requeue). An attempt
   that ends before its moment completes the cycle: its results.json is compared with the reference.
3. Until --faults signals were delivered. Each fault is reported with the stage the attempt had
   printed last (startup, data generation, a phase's training or resume, after a phase).

Prints "K of K faults survived, results identical" (exit 0), or the first difference and the seed
to replay (exit 1). --json FILE keeps every fault; --table prints the figures by kind and stage.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

SIGNALS = {"KILL": signal.SIGKILL, "TERM": signal.SIGTERM, "USR1": signal.SIGUSR1}
#: kind WRITE: SIGKILL inside the write of one of these files (temp file written, not yet renamed),
#: through lhl's LHL_FAULT_WRITE hook (lhl.core.io.fault_point)
WRITES = ("phase.ckpt", "last.ckpt", "results.json", "forgetting.png", "config.yaml")
#: the tiny sequence: 3 phases of synthetic rooms at 32x32, a narrow network, one thread
TINY = {
    "seq": "synthetic_small_s1", "method": "lwf",
    "data.batch_size": 4, "data.num_workers": 0,
    "model.backbone": "resnet18", "model.timm_kwargs": "{}", "model.init": "scratch", "model.head_width": 8,
    "model.aspp_rates": "[1,2,3]", "train.epochs": 2, "train.task_epochs": "null", "train.lr": 1e-3,
    "train.lr_schedule": "constant", "train.progress_bar": False, "train.accelerator": "cpu",
    "train.checkpoint_every_steps": 2, "train.log_every_n_steps": 1, "eval.gallery_samples": 2,
}


def overrides(folder: Path, cache: Path, steps: int) -> list:
    data = "{n_train: 24, n_val: 8, height: 32, width: 32, seed: 0, classes: 13, cache: '" + str(cache) + "'}"
    return [f"{k}={v}" for k, v in {**TINY, "data.options": data, "train.max_steps": steps,
                                     "run.out_dir": str(folder)}.items()]


def fake_slurm(bin_dir: Path) -> dict:
    """A SLURM job's environment (SIGUSR1 = requeue) with a stub `scontrol` that does nothing."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    stub = bin_dir / "scontrol"
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "WANDB_"))}
    env.update(SLURM_JOB_ID="4242", SLURM_NTASKS="1", SLURM_JOB_NAME="lhl-chaos", SLURM_PROCID="0",
               SLURM_LOCALID="0", SLURM_NODEID="0", SLURM_NODELIST="localhost", OMP_NUM_THREADS="1",
               PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", PYTHONUNBUFFERED="1")
    return env


def stage_of(lines: list) -> str:
    """What the attempt was doing, from the last marker it printed."""
    for line in reversed(lines):
        if line.startswith("== phase"):
            return f"phase {line.split()[2].split('/')[0]} training"
        if line.strip().startswith("resuming phase"):
            return f"phase {line.split()[2]} training (resumed)"
        if line.strip().startswith("after phase"):
            return f"after phase {line.split()[2].rstrip(':')} (record, plots, next phase's start)"
        if line.startswith("synthetic rooms: generating"):
            return "data generation"
    return "startup (imports, config, data check)"


class Attempt:
    """One `lhl run` process whose printed lines are kept."""

    def __init__(self, args: list, env: dict, log: Path):
        self.start = time.monotonic()
        self.proc = subprocess.Popen([sys.executable, "-m", "lhl", "run", *args], env=env, text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.lines: list = []
        self.log = log
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        with self.log.open("a") as f:
            for line in self.proc.stdout:
                self.lines.append(line.rstrip("\n"))
                f.write(line)

    def wait(self, timeout: float) -> int:
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.reader.join(10)
        return code


def complete(folder: Path, phases: int = 3) -> bool:
    results = next(folder.rglob("results.json"), None)
    return results is not None and len(json.loads(results.read_text()).get("phases", [])) == phases


def first_difference(a, b, path="") -> str:
    if type(a) is not type(b):
        return f"{path or '/'}: {a!r} != {b!r}"
    if isinstance(a, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                return f"{path}/{k}: only in {'the reference' if k in a else 'the campaign'}"
            d = first_difference(a[k], b[k], f"{path}/{k}")
            if d:
                return d
        return ""
    if isinstance(a, list):
        if len(a) != len(b):
            return f"{path}: {len(a)} entries != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            d = first_difference(x, y, f"{path}/{i}")
            if d:
                return d
        return ""
    return "" if a == b else f"{path}: {a!r} (reference) != {b!r} (after the faults)"


def campaign(faults: int, seed: int, work: Path, steps: int, kinds: list, log=print, src=None,
             budget_s: float = 0) -> dict:
    """`src`: run the `lhl` of this source folder (e.g. an exported commit) instead of the installed one;
    `budget_s` > 0: no new fault after that many seconds (the cycle under way still completes)."""
    began = time.monotonic()
    rng = random.Random(seed)
    env = fake_slurm(work / "bin")
    if src:
        env["PYTHONPATH"] = os.pathsep.join([str(Path(src).resolve()), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    ref = Attempt(overrides(work / "ref", work / "ref_cache", steps), env, logs / "reference.log")
    if ref.wait(1800) != 0 or not complete(work / "ref"):
        raise SystemExit(f"the reference run failed; see {logs / 'reference.log'}")
    span = time.monotonic() - ref.start
    reference = next((work / "ref").rglob("results.json")).read_bytes()
    log(f"reference run: {span:.1f} s; drawing {faults} fault moments in [0, {span:.1f}] s (seed {seed})")
    record, cycle, difference = [], 0, None
    while len(record) < faults and difference is None and not (budget_s and time.monotonic() - began > budget_s):
        cycle += 1
        folder, cache = work / f"cycle{cycle}", work / f"cycle{cycle}_cache"
        args = overrides(folder, cache, steps)
        for attempt in range(1, 1000):
            moment, kind = rng.uniform(0, span), rng.choice(kinds)
            target = rng.choice(WRITES) if kind == "WRITE" else None
            if len(record) >= faults or (budget_s and time.monotonic() - began > budget_s):
                moment = target = None  # the faults are spent (or the time): this attempt runs to the end
            if target is not None:  # killed by the hook inside that write, if the attempt makes one
                run = Attempt(args, {**env, "LHL_FAULT_WRITE": target}, logs / f"cycle{cycle}.log")
                code = run.wait(1800)
                if code == -signal.SIGKILL:
                    record.append({"cycle": cycle, "attempt": attempt, "signal": f"KILL in {target} write",
                                   "moment_s": round(time.monotonic() - run.start, 2),
                                   "stage": stage_of(run.lines), "exit": code})
                    log(f"  fault {len(record)}: cycle {cycle} attempt {attempt}: SIGKILL inside a write of "
                        f"{target} ({stage_of(run.lines)})")
                    continue
                moment = None  # no such write was left to make: the attempt ran to its end
            else:
                run = Attempt(args, env, logs / f"cycle{cycle}.log")
            while moment is not None and run.proc.poll() is None and time.monotonic() - run.start < moment:
                time.sleep(0.01)
            if moment is not None and run.proc.poll() is None:
                stage = stage_of(run.lines)
                run.proc.send_signal(SIGNALS[kind])
                code = run.wait(600)
                record.append({"cycle": cycle, "attempt": attempt, "signal": kind, "moment_s": round(moment, 2),
                               "stage": stage, "exit": code})
                log(f"  fault {len(record)}: cycle {cycle} attempt {attempt}: SIG{kind} at {moment:.1f} s "
                    f"({stage}) -> exit {code}")
                continue
            code = run.wait(1800) if target is None else code
            if code != 0 or not complete(folder):
                difference = f"cycle {cycle} attempt {attempt} ended with exit code {code} before completing"
                break
            got = next(folder.rglob("results.json")).read_bytes()
            if got != reference:
                difference = first_difference(json.loads(reference), json.loads(got)) or "the bytes differ"
            leftovers = [str(p.relative_to(folder)) for p in folder.rglob("*") if p.name.endswith(".tmp")
                         or p.name == "run.lock"]
            if leftovers:
                log(f"  cycle {cycle}: left in the run folder: {leftovers}")
            shutil.rmtree(folder, ignore_errors=True)
            shutil.rmtree(cache, ignore_errors=True)
            break
    survived = len(record) if difference is None else sum(1 for r in record if r["cycle"] < cycle)
    return {"seed": seed, "faults": record, "survived": survived, "difference": difference,
            "reference_s": round(span, 1), "cycles": cycle, "steps": steps}


def table(summary: dict) -> str:
    """The faults by signal and stage, as markdown."""
    counts = Counter((r["stage"], r["signal"]) for r in summary["faults"])
    stages = sorted({s for s, _ in counts})
    kinds = sorted({k for _, k in counts})
    rows = ["| stage at the fault | " + " | ".join(f"SIG{k}" for k in kinds) + " |",
            "|---|" + "---|" * len(kinds)]
    rows += [f"| {s} | " + " | ".join(str(counts[(s, k)]) for k in kinds) + " |" for s in stages]
    return "\n".join(rows)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="lhl dev chaos", description=__doc__.split("\n\n")[0])
    p.add_argument("--faults", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=5, help="train.max_steps of each phase")
    p.add_argument("--kinds", default="KILL,TERM,USR1,WRITE",
                   help="faults to draw from: signals KILL, TERM, USR1; WRITE = SIGKILL inside a file write")
    p.add_argument("--work", help="campaign folder (default: a temporary one, removed after)")
    p.add_argument("--json", help="write every fault and the outcome to this file")
    p.add_argument("--table", action="store_true", help="print the faults by stage and signal")
    p.add_argument("--src", help="the source folder whose lhl runs (default: the installed one)")
    p.add_argument("--budget-s", type=float, default=0, help="stop drawing faults after this many seconds")
    a = p.parse_args(argv)
    work = Path(a.work) if a.work else Path(tempfile.mkdtemp(prefix="lhl_chaos_"))
    try:
        summary = campaign(a.faults, a.seed, work, a.steps, a.kinds.split(","), src=a.src, budget_s=a.budget_s)
    finally:
        if not a.work:
            shutil.rmtree(work, ignore_errors=True)
    if a.json:
        Path(a.json).write_text(json.dumps(summary, indent=1) + "\n")
    if a.table:
        print(table(summary))
    k = len(summary["faults"])
    if k < a.faults:
        print(f"the time budget ({a.budget_s:.0f} s) allowed {k} of the {a.faults} faults asked for")
    if summary["difference"] is None:
        print(f"{k} of {k} faults survived, results identical")
        return 0
    print(f"{summary['survived']} of {k} faults survived; first difference: {summary['difference']}\n"
          f"replay: lhl dev chaos --faults {a.faults} --seed {a.seed} --steps {a.steps} --kinds {a.kinds}")
    return 1


def cli(argv) -> int:
    """`lhl dev chaos ...`"""
    return main(list(argv))


if __name__ == "__main__":
    sys.exit(main())
