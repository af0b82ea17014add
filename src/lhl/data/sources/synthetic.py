"""Synthetic rooms as a dataset: generated once into a cache folder, then read by the NYUv2 reader.

Also `cli(argv)`, the `lhl data synth` command, which writes a set and a grid picture of it.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Optional, Sequence

from lhl.data.sources.mtan_npy import MTANNpyDataset
from lhl.data.sources.nyuv2 import CLASSES, FOLDERS, NYUv2
from lhl.data.synthetic_rooms import writer
from lhl.data.synthetic_rooms.label_sets import LABEL_SETS, check_classes, relabel
from lhl.core.io import atomic_savefig
from lhl.core.registry import DATASETS


@DATASETS.register("synthetic")
class SyntheticRooms(MTANNpyDataset):
    """Procedural NYUv2-like rooms (13 classes, depth, normals), same label format as `nyuv2`.

    Options: n_train (1000), n_val (300), height (96), width (128), seed (0), cache
    (default `$LHL_CACHE` or `~/.cache/lhl`; the set lives in `<cache>/synthetic/<hash>`), classes
    (13, the drawn NYUv2 classes, or 7 merged from them: `synthetic_rooms.label_sets`; read-time, so
    both read the same generated set).
    A given `root` is used as the set's folder: read as it is if it holds a set made with the same
    parameters (else an error), generated there if it is missing or empty.
    """

    CLASSES = CLASSES  # the instance's own: its label set's names
    #: normals are stored (x, y, z) of the OpenCV camera frame (camera.to_mtan_normals), as MTAN's
    NORMAL_X_CHANNEL = 0

    def __init__(self, root=None, split="train", tasks=("semantic", "depth", "normal"),
                 n_train=1000, n_val=300, height=96, width=128, seed=0, cache=None, classes=13):
        self.classes = check_classes(classes)
        self.CLASSES = LABEL_SETS[self.classes][0]
        self.file_classes = len(CLASSES)  # the files hold the 13 drawn classes whatever the read-time set
        self.params = writer.set_params(n_train, n_val, height, width, seed)
        folder = writer.ensure_set(self.params, cache=cache, root=root)
        super().__init__(folder, split, tasks, FOLDERS, dataset_name="synthetic", config_key="data.root",
                         fix="delete the folder so it is regenerated, or unset data.root to use the cache",
                         obtain="generated on demand: delete the folder, or write one with "
                         "`lhl data synth --out DIR`")

    def __getitem__(self, item: int) -> dict:
        sample = super().__getitem__(item)
        if "semantic" in sample:
            sample["semantic"] = relabel(sample["semantic"], self.classes)
        return sample

    @classmethod
    def prepare(cls, root=None, cache=None, classes=13, **options) -> Path:
        """Generate the set if missing (call once before DDP ranks start, e.g. in prepare_data)."""
        check_classes(classes)
        return writer.ensure_set(writer.set_params(**options), cache=cache, root=root)

    #: the tuning stream's generator seed is the set's seed plus this (`lhl.data.tuning`): other
    #: views from the same distributions, far from the small seeds of presets and from the
    #: pretraining set's (`engine.synthetic_init.PRETRAIN`, 7919)
    TUNING_SEED_OFFSET = 104729

    @classmethod
    def tuning_options(cls, options: dict) -> dict:
        """`data.options` of the tuning variant (`data.stream=tune`): the same set at another seed."""
        return {**options, "seed": int(options.get("seed", 0)) + cls.TUNING_SEED_OFFSET}

    @classmethod
    def task_info(cls, classes=13, **options) -> dict:
        return {**NYUv2.task_info(), "semantic": ("semantic", check_classes(classes))}


def save_grid(root, path, n: int = 4, split: str = "train") -> Path:
    """A PNG with one row per sample: image, colourised labels, depth, normals (atomic write)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lhl.tasks import build_task

    data = MTANNpyDataset(root, split, list(FOLDERS), FOLDERS, dataset_name="synthetic")
    tasks = {t: build_task(kind, t, ch) for t, (kind, ch) in NYUv2.task_info().items()}
    rows = min(n, len(data))
    fig, axes = plt.subplots(rows, 4, figsize=(8, 1.6 * rows + 0.3), squeeze=False)
    for r in range(rows):
        s = data[r]
        pics = [s["image"].numpy().transpose(1, 2, 0)] + [tasks[t].colourise(s[t], is_label=True) for t in tasks]
        for ax, pic, title in zip(axes[r], pics, ("image", "semantic", "depth", "normal")):
            ax.imshow(pic)
            ax.set_axis_off()
            if r == 0:
                ax.set_title(title, fontsize=9)
    fig.tight_layout()
    atomic_savefig(fig, path, dpi=100)
    plt.close(fig)
    return Path(path)


def cli(argv: Optional[Sequence[str]] = None) -> int:
    """`lhl data synth --out DIR [...]`: write a synthetic-rooms set and DIR/grid.png."""
    p = argparse.ArgumentParser(prog="lhl data synth", description="Generate a synthetic-rooms set (NYUv2 MTAN layout).")
    p.add_argument("--out", required=True, help="folder to create (must not exist yet)")
    p.add_argument("--n-train", type=int, default=1000)
    p.add_argument("--n-val", type=int, default=300)
    p.add_argument("--height", type=int, default=96)
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--grid", default=None, help="grid picture path (default: OUT/grid.png)")
    a = p.parse_args(argv)
    out = Path(a.out)
    if out.exists():
        p.error(f"--out {out} already exists; choose a new folder or delete it")
    start = time.perf_counter()
    writer.write_set(out, writer.set_params(a.n_train, a.n_val, a.height, a.width, a.seed))
    took = time.perf_counter() - start
    grid = save_grid(out, a.grid or out / "grid.png", split="train" if a.n_train else "val")
    print(f"wrote {a.n_train} train / {a.n_val} val at {a.height}x{a.width} to {out} in {took:.1f} s; grid: {grid}")
    return 0
