"""Learning curves within each phase (`eval.every_n_epochs`): a run folder's `curves.json`, the
convergence table and its plot (the command `lhl curves`: `lhl.cli.curves`).

`curves.json` is a list of rows `{"phase": i, "epoch": e (1-based), "step": optimiser steps of the
phase so far, "trained": [tasks], "metrics": {task: {metric: value}}}`, one per in-fit validation.

Convergence (is a phase trained close to convergence?): for each phase and each task it trained,
the task's main metric at the half epoch (the last recorded epoch <= E/2, E = the phase's last
recorded epoch) and at E; `reached` = value(E/2) / value(E) when higher is better, value(E) /
value(E/2) when lower is better: the share of the doubled training's result that half the
training reaches. A run with every phase twice as long (`train.epoch_scale=2`) thus tells whether
a phase's epochs are enough: `reached >= 0.9` counts as converged.

That reading holds when the learning rate does not depend on the phase's length (the constant
schedule): epoch E/2 of the long run is then a run of E/2 epochs. An annealed schedule
(`train.lr_schedule=cosine|poly`) has not yet annealed at epoch E/2, so the value there is not what
a run of E/2 epochs reaches; the check then takes value(E/2) from a separate run of E/2 epochs with
otherwise the same settings and seed (E per phase: `train.task_epochs` may give phases their own),
right after each phase (its results.json): `lhl curves LONG --short SHORT`, and `make curves`
makes both; without it the check refuses.

Over several seeds (`lhl curves RUN... --short SHORT...`): `curves_over_seeds`.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Union

from omegaconf import OmegaConf

from lhl.core.errors import MissingInput, UsageError
from lhl.core.io import atomic_savefig, atomic_write_json, atomic_write_text
from lhl.config.epochs import phase_epochs
from lhl.config.keys import RESUMABLE_CHANGES, flatten
from lhl.reporting.render import arrow, table
from lhl.runs.folder import CONFIG_YAML, CURVES_JSON, CURVES_PNG
from lhl.runs.results import Results

PathLike = Union[str, Path]
CONVERGED = 0.9  # reached >= this: converged (docs/concepts/metrics.md, convergence of a phase)


# --- the file -------------------------------------------------------------------------------------
def load_curves(path: PathLike) -> List[dict]:
    """The rows of `curves.json` (a run folder or the file itself), sorted by (phase, epoch)."""
    path = Path(path)
    if path.is_dir():
        path = path / CURVES_JSON
    if not path.is_file():
        raise MissingInput(f"{path}: no learning curves; run with eval.every_n_epochs=N "
                                "(e.g. make curves SEQ=<seq>)")
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
        return sorted(rows, key=lambda r: (int(r["phase"]), int(r["epoch"])))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise UsageError(f"{path}: malformed curves file ({type(e).__name__}: {e}); expected a list of "
                         "{'phase', 'epoch', 'step', 'trained', 'metrics'} rows") from e


def save_phase_curve(path: PathLike, phase: int, rows: Iterable[Mapping]) -> Path:
    """Write phase `phase`'s rows into `curves.json` atomically, replacing any rows that phase
    already had there (a re-run or resumed phase) and keeping the other phases'; of two rows of
    one epoch (a fit resumed at that epoch's validation) the later one stays. Call on one rank."""
    path = Path(path)
    kept = [r for r in load_curves(path) if int(r["phase"]) != int(phase)] if path.is_file() else []
    by_epoch = {(int(r["phase"]), int(r["epoch"])): r for r in kept + [dict(r, phase=int(phase)) for r in rows]}
    return atomic_write_json(path, [by_epoch[k] for k in sorted(by_epoch)])


# --- the computation ------------------------------------------------------------------------------
def reached(half: Optional[float], last: Optional[float], higher_is_better: bool) -> Optional[float]:
    """value(E/2) / value(E) (higher is better) or value(E) / value(E/2) (lower is better); None
    when a value is missing, not finite, or the ratio's denominator is not positive."""
    if half is None or last is None or not (math.isfinite(half) and math.isfinite(last)):
        return None
    num, den = (half, last) if higher_is_better else (last, half)
    return num / den if den > 0 else None


def half_epoch(epochs: Sequence[int]) -> Optional[int]:
    """The last recorded epoch at or before half of the last one (None: nothing recorded before it)."""
    if not epochs:
        return None
    last = max(epochs)
    before = [e for e in epochs if e <= last / 2]
    return max(before) if before else None


def _value(row: Optional[Mapping], task: str, metric: str) -> Optional[float]:
    v = None if row is None else row["metrics"].get(task, {}).get(metric)
    return None if v is None else float(v)


def _after_phase(short: Results, phase: int) -> Optional[Mapping]:
    """The short run's results after `phase`, as a curves row (None when it has no such phase)."""
    return next(({"metrics": p["metrics"]} for p in short.phases if int(p["phase"]) == phase), None)


def convergence(rows: Sequence[Mapping], results: Results, short: Optional[Results] = None,
                short_epochs: Optional[Mapping[int, int]] = None) -> List[dict]:
    """One entry per phase and trained task: phase, task, metric (its main one), higher_is_better,
    half_epoch, half, last_epoch, last, reached, converged. With `short` (the results of a separate
    run that trains phase i `short_epochs[i]` epochs), value(E/2) is that run's value right after
    the phase."""
    out = []
    for phase in sorted({int(r["phase"]) for r in rows}):
        mine = {int(r["epoch"]): r for r in rows if int(r["phase"]) == phase}
        last_e = max(mine)
        if short is not None:
            half_e, half_row = (short_epochs or {}).get(phase), _after_phase(short, phase)
        else:
            half_e = half_epoch(list(mine))
            half_row = mine.get(half_e)
        for task in mine[last_e]["trained"]:
            metric = results.main_metric(task)
            higher = results.higher_is_better(task, metric)
            half = _value(half_row, task, metric)
            last = _value(mine[last_e], task, metric)
            ratio = reached(half, last, higher)
            out.append(dict(phase=phase, task=task, metric=metric, higher_is_better=higher, half_epoch=half_e,
                            half=half, last_epoch=last_e, last=last, reached=ratio,
                            converged=None if ratio is None else ratio >= CONVERGED))
    return out


#: the settings that set a phase's epochs (`lhl.config.epochs`): the short run differs in them
_EPOCH_KEYS = ("train.epochs", "train.task_epochs", "train.epoch_scale")

#: settings a short run may differ in from the long one besides its epochs: what a run may change
#: on resumption (hardware, logging, display), where it ran, where its phases started (the long run
#: of an isolated check starts each phase from the short run's network) and whether it validated
#: within phases; everything else (the seed, the method, the optimiser, the data) must match
_MAY_DIFFER = RESUMABLE_CHANGES + (
    "run.name", "run.out_dir", "run.seeds", "run.phases_start_from", "eval.every_n_epochs")


def _config(run_dir: Path) -> dict:
    path = run_dir / CONFIG_YAML
    if not path.is_file():
        raise MissingInput(f"{path}: no config.yaml; {run_dir} is no lhl run folder")
    return OmegaConf.to_container(OmegaConf.load(path), resolve=False)


def annealed(cfg: Mapping) -> bool:
    """Whether the run's learning rate depends on the phase's length (an annealed schedule)."""
    return str((cfg.get("train") or {}).get("lr_schedule", "constant")) != "constant"


def config_differences(first: Path, other: Path, also: tuple = (), label: str = "long run") -> str:
    """The settings in which run `other` differs from run `first`, besides `_MAY_DIFFER` and `also`,
    as "key: other's (<label> first's)" ('' when none)."""
    a, b = flatten(_config(first)), flatten(_config(other))
    differ = sorted(k for k in set(a) | set(b)
                    if not k.startswith(_MAY_DIFFER + tuple(also)) and a.get(k) != b.get(k))
    shown = ", ".join(f"{k}: {b.get(k)!r} ({label} {a.get(k)!r})" for k in differ[:6])
    return shown + (" ..." if len(differ) > 6 else "")


def check_short(long_dir: Path, short_dir: Path, phases: Mapping[int, Sequence[str]]) -> Dict[int, int]:
    """{phase: the short run's epochs there} for `phases` ({phase: the tasks it trains}), after
    checking the short run is the long run with fewer epochs in every phase: the same settings and
    seed but for its epochs (`_EPOCH_KEYS`) and where and how it ran (`_MAY_DIFFER`); a ValueError
    names what differs."""
    differ = config_differences(long_dir, short_dir, _EPOCH_KEYS)
    if differ:
        raise UsageError(f"{short_dir}/config.yaml: --short must be the same run with fewer epochs; it "
                         f"differs in {differ}")
    long, short = (_config(d).get("train") or {} for d in (long_dir, short_dir))
    out = {}
    for phase, tasks in sorted(phases.items()):
        e_long, e_short = phase_epochs(long, tasks), phase_epochs(short, tasks)
        if not 0 < e_short < e_long:
            raise UsageError(f"{short_dir}/config.yaml: phase {phase} ({'+'.join(tasks)}) trains {e_short} "
                             f"epochs (train.epochs={short.get('epochs')}, task_epochs, epoch_scale); --short "
                             f"needs fewer epochs in every phase than the long run's {e_long} there")
        out[int(phase)] = e_short
    return out


def phase_tasks(rows: Sequence[Mapping]) -> Dict[int, List[str]]:
    """{phase: the tasks it trains} from a run's curve rows."""
    return {int(r["phase"]): list(r["trained"]) for r in rows}


def fmt_or_dash(v, spec: str = ".4f") -> str:
    return "—" if v is None else format(v, spec)


def curves_markdown(entries: Sequence[Mapping], title: str = "") -> str:
    """The convergence table as Markdown."""
    head = ["phase", "task", "metric", "epoch E/2", "value E/2", "epoch E", "value E", "reached", f"≥ {CONVERGED}"]
    rows = [[str(e["phase"]), e["task"], e["metric"] + arrow(e["higher_is_better"]), fmt_or_dash(e["half_epoch"], "d"),
             fmt_or_dash(e["half"]), str(e["last_epoch"]), fmt_or_dash(e["last"]), fmt_or_dash(e["reached"], ".3f"),
             "—" if e["converged"] is None else ("yes" if e["converged"] else "no")] for e in entries]
    lines = ([f"# Learning curves: {title}", ""] if title else []) + table(head, rows)
    note = ("reached = value(E/2) / value(E) (↑) or value(E) / value(E/2) (↓): the share of the result of "
            f"training twice as long that half the training reaches; ≥ {CONVERGED}: converged.")
    return "\n".join(lines + ["", note]) + "\n"


# --- the plot -------------------------------------------------------------------------------------
def plot_curves(rows: Sequence[Mapping], results: Results, path: PathLike,
                short: Optional[Mapping] = None, short_epochs: Optional[Mapping[int, int]] = None) -> Path:
    """Per phase, one subplot: the trained task(s)' main metric against epoch, E/2 marked;
    `short` {(phase, task): value}: a run of `short_epochs[phase]` epochs after the phase, drawn as a
    star at that epoch (which is then the one marked)."""
    from matplotlib.figure import Figure

    phases = sorted({int(r["phase"]) for r in rows})
    fig = Figure(figsize=(3.6 * max(len(phases), 1), 3.2))
    for i, phase in enumerate(phases):
        ax = fig.add_subplot(1, max(len(phases), 1), i + 1)
        mine = [r for r in rows if int(r["phase"]) == phase]
        epochs = [int(r["epoch"]) for r in mine]
        for task in mine[-1]["trained"]:
            metric = results.main_metric(task)
            ys = [math.nan if (v := _value(r, task, metric)) is None else v for r in mine]
            ax.plot(epochs, ys, marker="o", markersize=3,
                    label=f"{task}: {metric}{arrow(results.higher_is_better(task, metric))}")
        for task in mine[-1]["trained"]:
            value = (short or {}).get((phase, task))
            if value is not None:
                ax.plot([short_epochs[phase]], [value], marker="*", markersize=9, linestyle="none", color="black",
                        label=f"{task}: run of {short_epochs[phase]} epochs")
        half = short_epochs.get(phase) if short is not None else half_epoch(epochs)
        if half is not None:
            ax.axvline(half, color="grey", linestyle=":", linewidth=1)
        ax.set_title(f"phase {phase}: train {'+'.join(mine[-1]['trained'])}", fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.legend(fontsize=7, loc="best")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return atomic_savefig(fig, path, dpi=120)


# --- lhl curves -----------------------------------------------------------------------------------
def write_curves(run_dir: PathLike, out: Optional[PathLike] = None, short: Optional[PathLike] = None) -> tuple:
    """Plot and table of a run folder: (entries, markdown, png path, md path); the table goes to
    the plot's name with `.md` (default `<run>/curves.png` and `<run>/curves.md`). `short`: the
    same run with fewer epochs a phase, whose value after each phase is value(E/2) (required when
    the learning rate is annealed over each phase)."""
    run_dir = Path(run_dir)
    rows, results = load_curves(run_dir), Results.load(run_dir)
    cfg = _config(run_dir) if (run_dir / CONFIG_YAML).is_file() else {}
    if short is None and annealed(cfg):
        schedule = cfg["train"]["lr_schedule"]
        raise UsageError(
            f"{run_dir}/config.yaml: train.lr_schedule={schedule} anneals the learning rate over each "
            "phase's epochs, so epoch E/2 of this run is not what a run of E/2 epochs reaches; pass "
            "--short <the same run with half the epochs> (make curves makes and passes one)")
    short_results = short_epochs = None
    if short is not None:
        short_epochs = check_short(run_dir, Path(short), phase_tasks(rows))
        short_results = Results.load(Path(short))
    png = Path(out) if out else run_dir / CURVES_PNG
    entries = convergence(rows, results, short_results, short_epochs)
    md = curves_markdown(entries, str(run_dir) + (f" (E/2: {short})" if short is not None else ""))
    if short is not None:
        counts = sorted(set(short_epochs.values()))
        each = (f"{counts[0]} epochs a phase" if len(counts) == 1 else
                "phases of " + " / ".join(str(short_epochs[p]) for p in sorted(short_epochs)) + " epochs")
        md += f"\nvalue E/2: {short}, a separate run of {each}, right after each phase (results.json).\n"
    points = {(e["phase"], e["task"]): e["half"] for e in entries} if short is not None else None
    plot_curves(rows, results, png, points, short_epochs)
    return entries, md, png, atomic_write_text(png.with_suffix(".md"), md)
