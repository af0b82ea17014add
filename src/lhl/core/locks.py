"""Two file locks: one writer per run folder (`HolderLock`) and one builder per cache entry (`build_lock`).

`HolderLock` is a file in the guarded folder that records its holder (pid, host, process start
time, SLURM job, the time it was taken) and whose mtime is a heartbeat, refreshed every
`HEARTBEAT_S` by a daemon thread. Taking it:

1. `flock` on the file (non-blocking). Where advisory locks work (local disks, most NFSv4 mounts)
   a live holder anywhere keeps it, and the kernel drops it when the holder dies, even on SIGKILL.
2. Since some shared file systems accept `flock` without enforcing it across hosts, the recorded
   holder is also judged, and refused unless *stale*:
   - the same host: stale when the pid is gone, or is now another process (its start time differs);
   - the same SLURM job id (a requeued job restarting, maybe on another node): stale, since SLURM
     runs one instance of a job at a time;
   - another host: stale when the heartbeat is older than `stale_after_s` (default 10 minutes,
     `LHL_LOCK_STALE_MINUTES`), i.e. its process stopped refreshing it (killed, node lost).
3. The new holder writes its record, re-reads it (on a file system without working locks, two
   starts in the same instant would both pass step 2; the later write wins and the other sees a
   foreign record and refuses), and removes the file when it is released.

`build_lock` serialises the builders of one cache entry with a blocking `flock`: the loser waits,
then finds the finished entry and reuses it. Where `flock` does not hold, builders still write to
temporary names and rename, so the entry is one valid copy either way.
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

from lhl.core.errors import UsageError

HEARTBEAT_S = 30.0
STALE_AFTER_S = 600.0


class FolderInUse(UsageError):
    """Another live process holds the lock; the message names it (one line and exit code 2 from `lhl`)."""


def _proc_start(pid: int) -> Optional[str]:
    """The process's start time in clock ticks since boot (Linux /proc), None elsewhere or when gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def me() -> dict:
    pid = os.getpid()
    return {"pid": pid, "host": socket.gethostname(), "proc_start": _proc_start(pid),
            "slurm_job": os.environ.get("SLURM_JOB_ID"), "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "token": f"{pid}-{time.time_ns()}"}


def stale_after_s() -> float:
    env = os.environ.get("LHL_LOCK_STALE_MINUTES")
    return float(env) * 60 if env else STALE_AFTER_S


def why_stale(holder: dict, heartbeat_age: float, limit: float) -> Optional[str]:
    """Why `holder`'s lock no longer holds (None: it is live)."""
    if not holder or "pid" not in holder:
        return "the lock file holds no holder record (a start that died while writing it)"
    mine = me()
    if holder.get("host") == mine["host"]:
        pid = int(holder["pid"])
        if not _alive(pid):
            return f"process {pid} is gone"
        start = _proc_start(pid)
        if holder.get("proc_start") and start and start != holder["proc_start"]:
            return f"pid {pid} is now another process"
        return None
    if holder.get("slurm_job") and holder.get("slurm_job") == mine["slurm_job"]:
        return f"it was this SLURM job ({mine['slurm_job']}) before a requeue"
    if heartbeat_age > limit:
        return f"its heartbeat is {heartbeat_age / 60:.0f} min old (limit {limit / 60:.0f} min)"
    return None


def describe(holder: dict, heartbeat_age: float) -> str:
    job = f", SLURM job {holder['slurm_job']}" if holder.get("slurm_job") else ""
    return (f"process {holder.get('pid')} on host {holder.get('host')}{job}, started {holder.get('started')}, "
            f"heartbeat {heartbeat_age:.0f} s ago")


class HolderLock:
    """`acquire()` or raise `FolderInUse`; `release()` (idempotent). See the module's notes."""

    def __init__(self, path, what: str, heartbeat_s: float = HEARTBEAT_S, stale_s: Optional[float] = None):
        self.path = Path(path)
        self.what = what
        self.heartbeat_s = heartbeat_s
        self.stale_s = stale_after_s() if stale_s is None else stale_s
        self.record: Optional[dict] = None
        self._fd: Optional[int] = None
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def _read(self) -> dict:
        try:
            return json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return {}

    def _age(self) -> float:
        try:
            return max(0.0, time.time() - self.path.stat().st_mtime)
        except OSError:
            return 0.0

    def _refuse(self, holder: dict, age: float) -> None:
        raise FolderInUse(
            f"{self.what} is in use by {describe(holder, age)} (lock file {self.path}): two processes "
            "writing one run folder would mix their checkpoints and results. Fix: wait for that run to "
            "end or stop it; if it is gone for good (a lost node), delete the lock file, or wait until "
            f"its heartbeat is older than {self.stale_s / 60:.0f} min (LHL_LOCK_STALE_MINUTES)."
        )

    def acquire(self) -> "HolderLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(5):  # the file may be removed by its releasing holder between open and flock
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                self._refuse(self._read(), self._age())
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        else:
            raise FolderInUse(f"{self.what}: could not take the lock file {self.path} (it keeps changing)")
        holder, age = self._read(), self._age()
        if holder.get("token") and why_stale(holder, age, self.stale_s) is None:
            os.close(fd)
            self._refuse(holder, age)
        record = me()
        data = json.dumps(record, indent=1).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
        os.fsync(fd)
        if self._read().get("token") != record["token"]:  # a racing start on a lockless file system won
            os.close(fd)
            self._refuse(self._read(), self._age())
        self._fd, self.record = fd, record
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name="lhl-lock-heartbeat", daemon=True)
        self._thread.start()
        return self

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                os.utime(self.path)
            except OSError:
                pass

    def release(self) -> None:
        if self._fd is None:
            return
        self._stop.set()
        if self._read().get("token") == self.record["token"]:
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass
        os.close(self._fd)  # drops the flock
        self._fd = None

    def __enter__(self) -> "HolderLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


@contextmanager
def build_lock(path, log=None) -> Iterator[None]:
    """Hold an exclusive `flock` on `path` (created if missing) while building what it guards;
    a second builder blocks here (saying so through `log`) until the first is done."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            if log is not None:
                log(f"waiting for another process building the same cache entry (lock {path})")
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
