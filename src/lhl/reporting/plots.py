"""PNG plots of a run and of a comparison, drawn on Agg `Figure`s (no pyplot, no global backend
state, safe in headless jobs and threads) and written atomically."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence, Tuple, Union

import numpy as np
from matplotlib.figure import Figure

from lhl.core.io import atomic_savefig
from lhl.reporting.comparison import Comparison
from lhl.reporting.render import arrow
from lhl.runs.results import Results

PathLike = Union[str, Path]


def _save(fig: Figure, path: PathLike, dpi: int = 120) -> Path:
    fig.tight_layout()
    return atomic_savefig(fig, path, dpi=dpi)


def plot_forgetting(results: Results, path: PathLike) -> Path:
    """Each task's main metric across phases, one subplot per task (units differ); the x axis is
    the phase index with the task it trained, the phase that learned the task is marked."""
    tasks = results.tasks
    fig = Figure(figsize=(3.6 * max(len(tasks), 1), 3.2))
    labels = [f"{p['phase']}\n{'+'.join(p['trained'])}" for p in results.phases]
    for i, task in enumerate(tasks):
        ax = fig.add_subplot(1, max(len(tasks), 1), i + 1)
        metric = results.main_metric(task)
        ys = [math.nan if v is None else v for v in results.matrix(task, metric)]
        xs = list(range(len(ys)))
        ax.plot(xs, ys, marker="o")
        k = results.learned_phase(task)
        if k is not None and not math.isnan(ys[k]):
            ax.plot([k], [ys[k]], marker="*", markersize=14, linestyle="none", label="learned")
            ax.legend(fontsize=7, loc="best")
        ax.set_title(f"{task}: {metric}{arrow(results.meta['directions'].get(task, {}).get(metric))}", fontsize=9)
        ax.set_xticks(xs)
        ax.set_xticklabels(labels, fontsize=7)
        ax.set_xlabel("after phase", fontsize=8)
        ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_compare(comparison: Comparison, path: PathLike) -> Path:
    """Bars of the final main metric (mean, std error bars) per method, one subplot per task."""
    tasks = list(comparison.tasks)
    methods = list(comparison.methods)
    fig = Figure(figsize=(max(3.0, 0.6 * len(methods) + 1.5) * max(len(tasks), 1), 3.4))
    for i, task in enumerate(tasks):
        ax = fig.add_subplot(1, max(len(tasks), 1), i + 1)
        metric = comparison.main_metric[task]
        stats = [comparison.methods[m].final.get(task, {}).get(metric) for m in methods]
        means = [math.nan if s is None or s["mean"] is None else s["mean"] for s in stats]
        stds = [0.0 if s is None or s["std"] is None else s["std"] for s in stats]
        xs = np.arange(len(methods))
        ax.bar(xs, means, yerr=stds, capsize=4, color=[f"C{j % 10}" for j in range(len(methods))])
        higher = comparison.directions.get(task, {}).get(metric)
        ax.set_title(f"{task}: {metric}{arrow(higher)}", fontsize=9)
        ax.set_xticks(xs)
        ax.set_xticklabels(methods, rotation=30, ha="right", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def save_gallery(rows: Sequence[Sequence[Tuple[str, np.ndarray]]], path: PathLike) -> Path:
    """A grid of titled images: `rows` is a list of rows of (title, HxWx3 uint8 image)."""
    n_rows = len(rows)
    n_cols = max((len(r) for r in rows), default=0)
    if n_rows == 0 or n_cols == 0:
        raise ValueError("save_gallery needs at least one image")
    fig = Figure(figsize=(2.4 * n_cols, 2.0 * n_rows))
    for r, row in enumerate(rows):
        for c in range(n_cols):
            ax = fig.add_subplot(n_rows, n_cols, r * n_cols + c + 1)
            ax.axis("off")
            if c < len(row):
                title, image = row[c]
                ax.imshow(np.asarray(image))
                ax.set_title(title, fontsize=8)
    return _save(fig, path, dpi=100)
