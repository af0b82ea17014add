"""Write a synthetic-rooms set in the NYUv2 MTAN `.npy` layout, once, into a folder keyed by its parameters.

Every image comes from its own Generator seeded by (seed, split, index), so any sample can be
regenerated alone. A set is built in a temporary sibling folder and renamed into place, so
concurrent writers (DDP ranks) never see a partial set: the first rename wins.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from lhl.data.synthetic_rooms.render import render
from lhl.data.synthetic_rooms.scene import sample_scene

#: bump when the generator's output changes, so cached sets are rebuilt
GENERATOR_VERSION = 1
SPLITS = {"train": 0, "val": 1}
META = "meta.json"


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


def _write_split(folder: Path, split: str, n: int, params: dict) -> None:
    dirs = {name: folder / split / name for name in ("image", "label", "depth", "normal")}
    for d in dirs.values():
        d.mkdir(parents=True)
    for i in range(n):
        s = generate_sample(params["seed"], split, i, params["height"], params["width"])
        np.save(dirs["image"] / f"{i}.npy", s["image"].astype(np.float16))
        np.save(dirs["label"] / f"{i}.npy", s["label"].astype(np.int8))
        np.save(dirs["depth"] / f"{i}.npy", s["depth"])
        np.save(dirs["normal"] / f"{i}.npy", s["normal"].astype(np.float16))


def write_set(out, params: dict) -> Path:
    """Generate the set into `out` atomically; if `out` already exists (another writer won), keep it."""
    out = Path(out)
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for split in SPLITS:
            _write_split(tmp, split, params[f"n_{split}"], params)
        (tmp / META).write_text(json.dumps({**params, "version": GENERATOR_VERSION}, indent=1))
        os.rename(tmp, out)
    except OSError:
        if not (out / META).exists():
            raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def ensure_set(params: dict, cache=None, root=None) -> Path:
    """The folder of the set: `root` as given (generated there if missing), else the cache entry."""
    folder = Path(root) if root is not None else cache_dir(params, cache)
    if not (folder / META).exists():
        if folder.exists() and any(folder.iterdir()):
            raise FileExistsError(
                f"synthetic rooms: {folder} exists but has no {META}; fix: point data.root at an "
                "empty or missing folder, or delete it so the set is regenerated"
            )
        if folder.exists():
            folder.rmdir()
        write_set(folder, params)
    return folder
