"""Write a synthetic-rooms set in the NYUv2 MTAN `.npy` layout, once, into a folder keyed by its parameters.

Every image comes from its own Generator seeded by (seed, split, index), so any sample can be
regenerated alone. A set is built in a temporary sibling folder and renamed into place, so
concurrent writers (DDP ranks, runs sharing a cache) never see a partial set; `ensure_set` also
makes a second writer wait on a lock file beside the set and reuse the first one's.
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Optional

import numpy as np

from lhl.data.synthetic_rooms.render import render
from lhl.data.synthetic_rooms.scene import sample_scene
from lhl.core.errors import UsageError
from lhl.core.io import current_umask
from lhl.core.locks import build_lock

#: bump when the generator's output changes, so cached sets are rebuilt (it is in the cache folder's
#: hash and meta.json). 2: depth stored [H, W, 1] and normals (x, y, z), MTAN's layout (was [H, W], (z, y, x))
GENERATOR_VERSION = 2
SPLITS = {"train": 0, "val": 1}
META = "meta.json"
#: below this many pixels in a split, views are rendered in this process (a pool's start-up costs more)
POOL_MIN_PIXELS = 2_000_000


def set_params(n_train: int = 1000, n_val: int = 300, height: int = 96, width: int = 128, seed: int = 0) -> dict:
    """The parameters that define a set (and its cache key)."""
    params = {"n_train": int(n_train), "n_val": int(n_val), "height": int(height), "width": int(width), "seed": int(seed)}
    bad = [k for k, v in params.items() if v < (0 if k in ("n_train", "n_val", "seed") else 8)]
    if bad:
        raise ValueError(f"synthetic rooms: invalid {bad} in data.options ({params}); counts >= 0, sizes >= 8")
    return params


def cache_home() -> Path:
    """`$LHL_CACHE`, or `~/.cache/lhl` when unset."""
    return Path(os.environ.get("LHL_CACHE") or Path.home() / ".cache" / "lhl")


def cache_dir(params: dict, cache=None) -> Path:
    """`<cache>/synthetic/<hash of the parameters and GENERATOR_VERSION>`."""
    key = json.dumps({**params, "version": GENERATOR_VERSION}, sort_keys=True)
    return Path(cache or cache_home()) / "synthetic" / hashlib.sha1(key.encode()).hexdigest()[:12]


def generate_sample(seed: int, split: str, index: int, height: int, width: int) -> dict:
    """One rendered view (see render.render), reproducible on its own."""
    rng = np.random.default_rng([int(seed), SPLITS[split], int(index)])
    return render(sample_scene(rng), height, width, rng)


def _write_sample(folder: Path, split: str, i: int, params: dict) -> None:
    s = generate_sample(params["seed"], split, i, params["height"], params["width"])
    np.save(folder / split / "image" / f"{i}.npy", s["image"].astype(np.float16))
    np.save(folder / split / "label" / f"{i}.npy", s["label"].astype(np.int8))
    np.save(folder / split / "depth" / f"{i}.npy", s["depth"][..., None])  # [H, W, 1], as MTAN's files
    np.save(folder / split / "normal" / f"{i}.npy", s["normal"].astype(np.float16))


def _write_split(folder: Path, split: str, n: int, params: dict, workers: int = 1) -> None:
    """Every view of a split; with `workers` > 1 in a process pool (each view has its own seed, so
    the files are the same whatever the number of workers)."""
    for name in ("image", "label", "depth", "normal"):
        (folder / split / name).mkdir(parents=True)
    if workers <= 1 or n * params["height"] * params["width"] < POOL_MIN_PIXELS:
        for i in range(n):
            _write_sample(folder, split, i, params)
        return
    # spawn, not fork: the parent may hold torch's thread pools, which do not survive a fork
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        jobs = [pool.submit(_write_sample, folder, split, i, params) for i in range(n)]
        for job in jobs:
            job.result()


def default_workers() -> int:
    """The CPUs this process may use, at most 16 (`LHL_SYNTH_WORKERS` overrides)."""
    env = os.environ.get("LHL_SYNTH_WORKERS")
    if env:
        return max(1, int(env))
    return max(1, min(16, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))


def write_set(out, params: dict, workers: Optional[int] = None) -> Path:
    """Generate the set into `out` atomically; if `out` already exists (another writer won), keep it.
    `workers`: processes rendering views (default: `default_workers()`)."""
    out = Path(out)
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp makes 0700; a shared cache must stay readable
        for split in SPLITS:
            _write_split(tmp, split, params[f"n_{split}"], params, default_workers() if workers is None else workers)
        (tmp / META).write_text(json.dumps({**params, "version": GENERATOR_VERSION}, indent=1))
        os.rename(tmp, out)
    except OSError:
        if not (out / META).exists():
            raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def _finished(folder: Path) -> bool:
    """True once a complete set is in place (its meta.json is written last, then renamed in)."""
    return (folder / META).exists()


def _has_entries(folder: Path) -> bool:
    try:
        return any(folder.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return folder.is_file()


def check_meta(folder: Path, params: dict) -> None:
    """Refuse a set whose meta.json records other parameters (or generator version) than asked for."""
    try:
        meta = json.loads((folder / META).read_text())
    except (OSError, ValueError) as err:
        raise ValueError(
            f"synthetic rooms: cannot read {folder / META} ({err}); fix: delete {folder} so it is regenerated"
        ) from None
    wanted = {**params, "version": GENERATOR_VERSION}
    found = {k: meta.get(k) for k in wanted}
    if found != wanted:
        same_version = found["version"] == GENERATOR_VERSION
        options = ", ".join(f"{k}: {found[k]}" for k in params)
        raise UsageError(
            f"synthetic rooms: {folder} holds a set made with {found}, but the requested set is {wanted}; "
            + (f"fix: set data.options to {{{options}}} to read it, or " if same_version
               else "it comes from another generator version; fix: ")
            + "point data.root at a missing or empty folder, or delete the folder so it is regenerated"
        )


def ensure_set(params: dict, cache=None, root=None) -> Path:
    """The folder of the set: `root` as given (generated there if missing), else the cache entry.

    An existing set must have been made with `params` (its meta.json is compared).
    """
    folder = Path(root) if root is not None else cache_dir(params, cache)
    if not _finished(folder):
        # another process may rename a finished set into place at any moment: re-check before refusing
        if _has_entries(folder) and not _finished(folder):
            raise FileExistsError(
                f"synthetic rooms: {folder} exists but has no {META}; fix: point data.root at an "
                "empty or missing folder, or delete it so the set is regenerated"
            )
        if not _finished(folder):
            try:
                folder.rmdir()
            except FileNotFoundError:
                pass
            except OSError:
                if not _finished(folder):
                    raise
        if not _finished(folder):
            # one generator per set: a second process waits here, then finds the set finished
            with build_lock(folder.parent / f".{folder.name}.lock", log=lambda m: print(f"synthetic rooms: {m}", flush=True)):
                if not _finished(folder):
                    n = params["n_train"] + params["n_val"]
                    print(f"synthetic rooms: generating {n} views at {params['height']}x{params['width']} "
                          f"into {folder} (once; later runs read the cache)", flush=True)
                    write_set(folder, params)
    check_meta(folder, params)
    return folder
