"""Atomic file writes: a temp file in the target folder, fsync, then `os.replace`.

A reader (or a requeued job) never sees a half-written results file, checkpoint or plot: the
target path holds either the old content or the complete new one. A write that fails for lack of
space or an I/O error (ENOSPC, EDQUOT, EIO, EROFS) removes its temp file and raises `StorageError`,
which names the path and the free space left on its file system; the old content stays.
"""
from __future__ import annotations

import errno
import json
import math
import os
import shutil
import signal
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, Iterator, Optional, Union


PathLike = Union[str, os.PathLike]

#: the errors of a full, over-quota, failing or read-only disk
STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS})


class StorageError(OSError):
    """A write failed for lack of space or an I/O error; the message names the path and the free space."""


def free_space(path: PathLike) -> str:
    """The free space of the file system holding `path` (or its nearest existing parent), e.g. '1.2 GiB'."""
    p = Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        free = float(shutil.disk_usage(p).free)
    except OSError as err:
        return f"unknown ({err.strerror or err})"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if free < 1024 or unit == "TiB":
            return f"{free:.0f} {unit}" if unit == "B" else f"{free:.1f} {unit}"
        free /= 1024
    return f"{free:.1f} TiB"


def storage_error(err: OSError, path: PathLike) -> StorageError:
    """`err` (ENOSPC, EIO, ...) while writing `path`, as a `StorageError` naming the path and the free space."""
    return StorageError(
        err.errno, f"cannot write {path}: {err.strerror or err} ({free_space(path)} free on its file system). "
        "The previous version of the file, and every earlier checkpoint and result, is left as it was. "
        "Fix: free space (or repair the disk) and run the same command again: the run resumes from its "
        "last checkpoint")


def stale_temp_files(folder: PathLike) -> list:
    """The temp files of writes that never finished (a killed process) in `folder` and its
    subfolders: `atomic_open`'s `.<name>.<random>.tmp` and checkpoints' `<name>.ckpt.tmp`. Only the
    one writer of a folder may delete them (a live writer's temp file looks the same)."""
    root = Path(folder)
    found = [p for p in root.rglob(".*.tmp") if p.is_file()] + [p for p in root.rglob("*.ckpt.tmp") if p.is_file()]
    return sorted(set(found))


def fault_point(path: PathLike) -> None:
    """A testing hook of the fault campaign (`lhl dev chaos`): with `LHL_FAULT_WRITE=<text>` in the
    environment, a write of a path containing <text> kills this process with SIGKILL after its temp
    file is written and before it is renamed into place (a crash inside a checkpoint write)."""
    want = os.environ.get("LHL_FAULT_WRITE")
    if want and want in os.fspath(path):
        os.kill(os.getpid(), signal.SIGKILL)


@contextmanager
def storage_errors(path: PathLike, tmp: Optional[PathLike] = None) -> Iterator[None]:
    """Turn a storage failure inside the block into `StorageError` for `path`, removing `tmp` (a
    partial temp file) on any error."""
    try:
        yield
    except BaseException as err:
        if tmp is not None:
            try:
                os.remove(tmp)
            except OSError:
                pass
        if isinstance(err, OSError) and not isinstance(err, StorageError) and err.errno in STORAGE_ERRNOS:
            raise storage_error(err, path) from err
        raise


def current_umask() -> int:
    """The process's umask (read by setting and restoring it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: mkstemp creates 0600 files; results and checkpoints get the mode a plain open() would give
#: (0644 under the usual umask), so collaborators on a shared cluster folder can read them
_FILE_MODE = 0o666 & ~current_umask()


@contextmanager
def atomic_open(path: PathLike) -> Iterator[BinaryIO]:
    """Yield a binary temp file beside `path`; on success it replaces `path`, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    with storage_errors(path, tmp):
        os.fchmod(fd, _FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        fault_point(path)
        os.replace(tmp, path)


def atomic_write_text(path: PathLike, text: str) -> Path:
    """Write `text` (UTF-8) to `path` atomically."""
    with atomic_open(path) as f:
        f.write(text.encode("utf-8"))
    return Path(path)


def to_jsonable(obj: Any) -> Any:
    """Plain JSON types: tensors and numpy scalars to numbers or lists, tuples to lists,
    non-finite floats (NaN, inf) to None, since strict JSON has no NaN."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    torch = sys.modules.get("torch")  # not imported here: light users (the data generator) skip it
    if torch is not None and isinstance(obj, torch.Tensor):
        return to_jsonable(obj.detach().cpu().tolist())
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "ndim", None) == 0:
        return to_jsonable(obj.item())
    if hasattr(obj, "tolist") and callable(obj.tolist):
        return to_jsonable(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return obj


def atomic_write_json(path: PathLike, obj: Any) -> Path:
    """Write `obj` as strict JSON (sorted keys, indent 2, trailing newline); NaN/inf become null."""
    text = json.dumps(to_jsonable(obj), sort_keys=True, indent=2, allow_nan=False)
    return atomic_write_text(path, text + "\n")


def atomic_torch_save(obj: Any, path: PathLike) -> Path:
    """`torch.save(obj, path)` through a temp file, so a killed job never leaves a torn checkpoint."""
    import torch

    with atomic_open(path) as f:
        torch.save(obj, f)
    return Path(path)


def atomic_savefig(fig, path: PathLike, **kwargs) -> Path:
    """Save a matplotlib figure atomically; the format comes from the suffix (default png)."""
    fmt = Path(path).suffix.lstrip(".").lower() or "png"
    with atomic_open(path) as f:
        fig.savefig(f, format=fmt, **kwargs)
    return Path(path)
