"""Pictures of a tuning grid (`lhl tune`): the stability-plasticity frontier and Δ against the knob.

Both read `tuned.yaml`'s per-method grid summaries (`reporting.tuning.PointScores.summary`):

- `plot_frontier`: one panel per method, plasticity (the new task's Δ right after its phase against
  finetune, %) on x, stability (relative backward transfer, %) on y, seed std as error bars, the
  non-dominated points filled and joined, the others hollow, the selected point starred;
- `plot_delta_vs_weight`: final Δ against finetune (mean ± std over tuning seeds) against the knob's
  value, the finetune end drawn at the left of a log axis, the selected value starred;
- `plot_forgetting_vs_weight`: one panel per old task, its main metric's forgetting (% of its value
  when learned) against the knob's value, one line per method (a distillation term that protects
  its task forgets less as its weight grows).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Union

from matplotlib.figure import Figure

from lhl.core.io import atomic_savefig
from lhl.reporting.tuning import non_dominated

PathLike = Union[str, Path]


def _mean(s: Mapping, key: str) -> float:
    v = s[key]["mean"]
    return math.nan if v is None else float(v)


def _std(s: Mapping, key: str) -> float:
    v = s[key]["std"]
    return 0.0 if v is None else float(v)


def _panels(n: int):
    cols = min(4, max(1, n))
    rows = (n + cols - 1) // cols
    fig = Figure(figsize=(3.6 * cols, 3.2 * rows))
    return fig, [fig.add_subplot(rows, cols, i + 1) for i in range(n)]


def plot_frontier(methods: Mapping[str, Mapping], path: PathLike) -> Path:
    """`methods`: {method: {"option", "chosen", "points": [summary, ...]}} as in tuned.yaml."""
    fig, axes = _panels(len(methods))
    for ax, (name, entry) in zip(axes, methods.items()):
        pts = sorted(entry["points"], key=lambda s: s["value"])
        front = set(non_dominated(pts))
        for s in pts:
            x, y = _mean(s, "plasticity"), _mean(s, "stability")
            filled = s["value"] in front
            ax.errorbar([x], [y], xerr=[_std(s, "plasticity")], yerr=[_std(s, "stability")], fmt="o",
                        color="C0", mfc="C0" if filled else "white", capsize=2, lw=0.8)
            ax.annotate(f"{s['value']:g}", (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
        fr = sorted([s for s in pts if s["value"] in front], key=lambda s: _mean(s, "plasticity"))
        ax.plot([_mean(s, "plasticity") for s in fr], [_mean(s, "stability") for s in fr], color="C0", alpha=0.4)
        chosen = [s for s in pts if s["value"] == entry["chosen"]]
        if chosen:
            ax.plot([_mean(chosen[0], "plasticity")], [_mean(chosen[0], "stability")], marker="*",
                    markersize=15, color="C3", linestyle="none", label=f"selected {entry['option']}={entry['chosen']:g}")
            ax.legend(fontsize=7, loc="best")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("plasticity: new task Δ vs finetune (%)", fontsize=8)
        ax.set_ylabel("stability: backward transfer (%)", fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return atomic_savefig(fig, path, dpi=120)


def plot_delta_vs_weight(methods: Mapping[str, Mapping], path: PathLike) -> Path:
    """Final Δ vs finetune (%) against the knob's value, one panel per method."""
    fig, axes = _panels(len(methods))
    for ax, (name, entry) in zip(axes, methods.items()):
        pts = sorted(entry["points"], key=lambda s: s["value"])
        log = entry.get("space", "log") == "log"
        positive = [s["value"] for s in pts if s["value"] > 0]
        zero_at = (min(positive) / 10.0) if positive else 1.0

        def x_of(v: float) -> float:
            if log:
                return v if v > 0 else zero_at
            return 1.0 - v  # thresholds: 1 - value on a log axis (most stable at the left)

        xs = [x_of(s["value"]) for s in pts]
        ax.errorbar(xs, [_mean(s, "delta") for s in pts], yerr=[_std(s, "delta") for s in pts],
                    fmt="o-", capsize=3, color="C0")
        for s in pts:
            if s["value"] == entry["chosen"]:
                ax.plot([x_of(s["value"])], [_mean(s, "delta")], marker="*", markersize=15, color="C3",
                        linestyle="none")
        ax.set_xscale("log")
        ax.set_xticks(xs)
        ax.set_xticklabels([f"{s['value']:g}" for s in pts], fontsize=7, rotation=30)
        ax.minorticks_off()
        ax.axhline(0.0, color="grey", lw=0.8)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel(f"method.{entry['option']}" + ("" if log else " (axis: 1 - value)"), fontsize=8)
        ax.set_ylabel("final Δ vs finetune (%)", fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return atomic_savefig(fig, path, dpi=120)


def _x_positions(entry: Mapping):
    pts = sorted(entry["points"], key=lambda s: s["value"])
    log = entry.get("space", "log") == "log"
    positive = [s["value"] for s in pts if s["value"] > 0]
    zero_at = (min(positive) / 10.0) if positive else 1.0
    return pts, [(s["value"] if s["value"] > 0 else zero_at) if log else 1.0 - s["value"] for s in pts]


def plot_forgetting_vs_weight(methods: Mapping[str, Mapping], path: PathLike) -> Path:
    """Per old task, forgetting (%) of its main metric against each method's knob value."""
    tasks = sorted({t for e in methods.values() for s in e["points"] for t in s.get("forgetting", {})})
    fig, axes = _panels(max(1, len(tasks)))
    for ax, task in zip(axes, tasks):
        for i, (name, entry) in enumerate(methods.items()):
            pts, xs = _x_positions(entry)
            ys = [s.get("forgetting", {}).get(task, {}).get("mean") for s in pts]
            es = [s.get("forgetting", {}).get(task, {}).get("std") or 0.0 for s in pts]
            keep = [(x, y, e) for x, y, e in zip(xs, ys, es) if y is not None]
            if keep:
                ax.errorbar([k[0] for k in keep], [k[1] for k in keep], yerr=[k[2] for k in keep], fmt="o-",
                            capsize=2, color=f"C{i % 10}", label=f"{name} (method.{entry['option']})")
        ax.set_xscale("log")
        ax.axhline(0.0, color="grey", lw=0.8)
        ax.set_title(f"{task}: forgetting against the knob", fontsize=9)
        ax.set_xlabel("knob value (log axis; leftmost point: the finetune end, 0)", fontsize=8)
        ax.set_ylabel("forgetting, % of learned value", fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return atomic_savefig(fig, path, dpi=120)
