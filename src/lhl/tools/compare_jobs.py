"""`lhl compare ... jobs=N`: the comparison's runs as N `lhl run` processes side by side.

On a CPU machine a small network cannot keep every core busy with one run: on the CPU benchmark,
two runs on one thread each side by side finish sooner than the same two runs in turn on two
threads (measured in docs/benchmarks/synthetic-s1.md). Each job is an ordinary `lhl run` with the run's
arguments, on `torch.get_num_threads() // N` threads (at least 1; set OMP_NUM_THREADS for the
whole comparison to change the total), its output in `<compare folder>/logs/<label>_seed<k>.log`.
Finished runs are skipped by the runs themselves (as with jobs=1), a failed run is named and the
others go on; the table is then made over the finished runs, and the exit status says a run failed.

The data set and the synthetic pretraining are made once, here, before any job starts, so that
N jobs do not each generate the same cache (both are written atomically, so that would be safe,
only slow). A run's result depends on its thread count through the rounding of sums
(docs/guides/limitations.md), so tables to be compared run with the same `jobs` on the same machine.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from omegaconf import OmegaConf


def threads_per_job(jobs: int, total: Optional[int] = None) -> int:
    """Each job's intra-op threads: the parent's torch thread count shared out, at least 1."""
    if total is None:
        import torch

        total = torch.get_num_threads()
    return max(1, int(total) // max(1, int(jobs)))


def command(args: Sequence[str]) -> List[str]:
    """The `lhl run` of one run, in this interpreter."""
    return [sys.executable, "-m", "lhl", "run", *args]


def log_name(label: str, seed) -> str:
    """A file name for one run's log: the label's characters kept where safe."""
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", f"{label}_seed{seed}") + ".log"


def prepare(configs) -> None:
    """The data set and the network's initial weights of every distinct (data, model) among the
    runs, made in this process so the jobs find them cached."""
    from lhl.data.datamodule import build_dataset
    from lhl.engine.build import build_network, build_specs

    seen = set()
    for _, _, cfg in configs:
        key = json.dumps([OmegaConf.to_container(cfg.data, resolve=True),
                          OmegaConf.to_container(cfg.model, resolve=True)], sort_keys=True, default=str)
        if key in seen:
            continue
        seen.add(key)
        tasks = list(build_specs(cfg))
        build_dataset(cfg.data, "train", tasks, index_tasks=tasks)
        build_network(cfg)


def run_jobs(configs, jobs: int, log_dir: Path, threads: Optional[int] = None,
             cmd=command) -> List[Tuple[str, object, int]]:
    """Run every (label, args, cfg) as a subprocess, `jobs` at a time; [(label, seed, exit code)]
    of the runs that failed. Ctrl-C stops the running jobs (their runs resume on the next call)."""
    log_dir = Path(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    threads = threads or threads_per_job(jobs)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    running, lock, failed, stopping = set(), threading.Lock(), [], threading.Event()
    total, counter = len(configs), iter(range(1, len(configs) + 1))
    print(f"compare: {total} runs, {jobs} at a time on {threads} thread(s) each; logs in {log_dir}", flush=True)

    def one(item):
        label, args, cfg = item
        log = log_dir / log_name(label, cfg.run.seed)
        start = time.time()
        if stopping.is_set():
            return
        with open(log, "w") as out:
            with lock:
                if stopping.is_set():
                    return
                proc = subprocess.Popen(cmd(args), stdout=out, stderr=subprocess.STDOUT, env=env)
                running.add(proc)
            code = proc.wait()
            with lock:
                running.discard(proc)
                n = next(counter)
        state = "done" if code == 0 else f"FAILED (exit {code}; see {log})"
        print(f"[{n}/{total}] {label} / seed {cfg.run.seed}: {state} in {time.time() - start:.0f} s", flush=True)
        if code != 0:
            with lock:
                failed.append((label, cfg.run.seed, code))

    pool = ThreadPoolExecutor(max_workers=jobs)
    try:
        for future in [pool.submit(one, item) for item in configs]:
            future.result()
    except KeyboardInterrupt:
        with lock:
            stopping.set()
            for proc in running:
                proc.terminate()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return failed
