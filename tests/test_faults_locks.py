"""One writer per run folder (a holder lock with stale-holder rules) and one builder per cache entry
(two processes asking for the same synthetic set or pretrained backbone get one copy)."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from conftest import tiny_overrides
from lhl.cli import main
from lhl.config import load_config
from lhl.core.locks import FolderInUse, HolderLock, why_stale
from lhl.runs.identity import run_folder_of


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_a_second_holder_is_refused_with_the_holders_name(tmp_path):
    lock = HolderLock(tmp_path / "run.lock", "run folder X").acquire()
    record = json.loads((tmp_path / "run.lock").read_text())
    assert record["pid"] == os.getpid() and record["host"] == socket.gethostname()
    code = (f"from lhl.core.locks import HolderLock\n"
            f"HolderLock({str(tmp_path / 'run.lock')!r}, 'run folder X').acquire()")
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert other.returncode != 0
    assert f"run folder X is in use by process {os.getpid()} on host {socket.gethostname()}" in other.stderr
    lock.release()
    assert not (tmp_path / "run.lock").exists()
    HolderLock(tmp_path / "run.lock", "run folder X").acquire().release()  # free again


def _write(path, **holder):
    path.write_text(json.dumps({"token": "t", "started": "then", **holder}))


def test_stale_holders_without_a_working_flock(tmp_path, monkeypatch):
    """The record alone decides where flock does not hold (no flock is held here)."""
    path = tmp_path / "run.lock"
    host = socket.gethostname()
    _write(path, pid=os.getpid(), host=host, proc_start=None)  # alive, this host: live
    with pytest.raises(FolderInUse, match=f"process {os.getpid()} on host {host}"):
        HolderLock(path, "run folder X").acquire()
    _write(path, pid=_dead_pid(), host=host)  # gone: taken over
    HolderLock(path, "run folder X").acquire().release()
    _write(path, pid=1, host="elsewhere", slurm_job="77")  # another host, fresh heartbeat: live
    with pytest.raises(FolderInUse, match="on host elsewhere, SLURM job 77"):
        HolderLock(path, "run folder X", stale_s=600).acquire()
    old = time.time() - 601
    os.utime(path, (old, old))  # heartbeat older than the limit: stale
    assert "heartbeat is 10 min old" in why_stale(json.loads(path.read_text()), 601, 600)
    HolderLock(path, "run folder X", stale_s=600).acquire().release()
    _write(path, pid=1, host="elsewhere", slurm_job="77")  # the same SLURM job, requeued elsewhere
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    assert "this SLURM job (77)" in why_stale(json.loads(path.read_text()), 0, 600)
    HolderLock(path, "run folder X", stale_s=600).acquire().release()


def test_heartbeat_refreshes_the_lock(tmp_path):
    path = tmp_path / "run.lock"
    lock = HolderLock(path, "X", heartbeat_s=0.05).acquire()
    old = time.time() - 100
    os.utime(path, (old, old))
    time.sleep(0.3)
    assert time.time() - path.stat().st_mtime < 5
    lock.release()


def test_second_lhl_run_on_a_folder_in_use_refuses(tmp_path, synth_cache, capsys):
    args = tiny_overrides(tmp_path, synth_cache, **{"sequence.tasks": "[semantic]", "eval.gallery_samples": 0})
    root = run_folder_of(load_config([], args)).root
    holder = HolderLock(root / "run.lock", f"run folder {root}").acquire()
    try:
        assert main(["run", *args]) == 2
    finally:
        holder.release()
    err = capsys.readouterr().err
    assert f"run folder {root} is in use by process {os.getpid()} on host {socket.gethostname()}" in err
    assert not (root / "results.json").exists()


RACE = """
go = Path(sys.argv[1])
while not go.exists():
    time.sleep(0.01)
"""


def _polling(procs) -> bool:
    """Both processes imported and wait for the start file (their Python is in time.sleep)."""
    for p in procs:
        try:
            wchan = open(f"/proc/{p.pid}/wchan").read()
        except OSError:
            return False
        if "hrtimer" not in wchan and "nanosleep" not in wchan:
            return False
    return True


def test_two_processes_building_one_synthetic_set_make_one_copy(tmp_path):
    """Both start together; the build takes 1 s; the second waits on the lock and reuses the first's."""
    cache, go = tmp_path / "cache", tmp_path / "go"
    body = """
real = writer.write_set
writer.write_set = lambda *a, **k: (time.sleep(1.0), real(*a, **k))[1]
print("FOLDER", writer.ensure_set(writer.set_params(n_train=2, n_val=1, height=16, width=16), cache=sys.argv[2]))
"""
    head = "import sys, time\nfrom pathlib import Path\nfrom lhl.data.synthetic_rooms import writer\n"
    procs = [subprocess.Popen([sys.executable, "-c", head + RACE + textwrap.dedent(body), str(go), str(cache)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    ready = time.time() + 60
    while time.time() < ready and any(p.poll() is None for p in procs) and not _polling(procs):
        time.sleep(0.2)
    go.touch()
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    joined = "".join(outs)
    assert joined.count("generating") == 1, joined  # one builder ...
    assert "waiting for another process building the same cache entry" in joined  # ... the other waited
    folders = {line for out in outs for line in out.splitlines() if line.startswith("FOLDER")}
    assert len(folders) == 1, outs  # the same copy for both
    assert sorted(p.name for p in cache.joinpath("synthetic").iterdir()) == sorted(
        [next(iter(folders)).rsplit("/", 1)[1], "." + next(iter(folders)).rsplit("/", 1)[1] + ".lock"])


def test_two_builders_of_one_pretrained_backbone_compute_it_once(tmp_path, monkeypatch):
    """The same lock between two threads (flock holds between two opens in one process as between
    processes; a process each would cost two torch imports): one computes, the other waits and reads."""
    import threading

    import torch
    from omegaconf import OmegaConf

    from lhl.engine import synthetic_init as si

    computed, logs = [], []

    def fake(*a, **k):
        time.sleep(1.0)
        computed.append(1)
        return {"w": torch.ones(2)}

    monkeypatch.setattr(si, "pretrain_backbone", fake)
    cfg = OmegaConf.create({"backbone": "resnet18", "output_stride": 16, "zero_init_last": True})
    out = []
    threads = [threading.Thread(target=lambda: out.append(si.synthetic_pretrained_state(
        cfg, (16, 16), cache=tmp_path, log=logs.append)["w"].tolist())) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert computed == [1] and out == [[1.0, 1.0], [1.0, 1.0]]
    assert any("waiting for another process" in m for m in logs)
