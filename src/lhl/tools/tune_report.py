"""`lhl tune`'s reading of its grid: scores per grid value, the choice, and the files it writes."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Tuple

import yaml
from omegaconf import OmegaConf

from lhl.core.io import atomic_write_text
from lhl.runs.folder import RunFolder
from lhl.runs.identity import run_folder_of
from lhl.reporting.frontier import plot_delta_vs_weight, plot_forgetting_vs_weight, plot_frontier
from lhl.runs.results import Results
from lhl.reporting.tuning import non_dominated, on_edge, score_point, select
from lhl.tools.runs import run_status


class ReportedSplitRead(RuntimeError):
    """A run that selection would read was not made on the tuning stream."""


def finished_results(folder: Path) -> Optional[Results]:
    """The Results of a finished tuning-stream run folder; None when missing or unfinished. A
    folder made on another stream is an error: selection never reads the reported split."""
    s = run_status(folder)
    if s is None or not s.finished:
        return None
    stream = OmegaConf.load(RunFolder(Path(folder)).config).get("data", {}).get("stream", "report")
    if stream != "tune":
        raise ReportedSplitRead(f"{folder}: made with data.stream={stream}; lhl tune selects on the tuning "
                                "stream only")
    return Results.load(folder)


def collect(configs) -> Tuple[Dict[str, Dict[float, List[Results]]], List[Results], List[str]]:
    """({method: {value: [Results]}}, finetune Results, names of the runs not finished)."""
    by_method: Dict[str, Dict[float, List[Results]]] = {}
    refs: List[Results] = []
    missing: List[str] = []
    for label, _, cfg, value in configs:
        folder = run_folder_of(cfg).root
        r = finished_results(folder)
        if r is None:
            missing.append(f"{folder} ({label}, seed {cfg.run.seed})")
            continue
        if value is None:
            refs.append(r)
        else:  # by the tuned method's name (a finetune end's run is finetune's: the label names it)
            by_method.setdefault(label.split()[0], {}).setdefault(value, []).append(r)
    return by_method, refs, missing


def choose(runs: Dict[float, List[Results]], refs: List[Results], objective: str, p: float) -> Tuple[float, List[dict]]:
    points = [score_point(v, rs, refs).summary() for v, rs in sorted(runs.items())]
    return select(points, objective, p), points


def entry(method: str, knob, chosen: float, points: List[dict], opts: dict, grid: List[float],
          widened: List[float]) -> dict:
    return {"option": knob.option, "space": knob.space, "chosen": chosen, "overrides": knob.overrides(chosen),
            "objective": opts["objective"], **({"p": opts["p"]} if opts["objective"] != "delta" else {}),
            "stream": "tune", "seeds": list(opts["seeds"]), "grid": list(grid), "widened": list(widened),
            "edge": on_edge(points, chosen), "points": points}


def _f(v, spec=".2f") -> str:
    return "—" if v is None else format(v, spec)


def markdown(seq: str, entries: Dict[str, dict], missing: List[str], machine: str) -> str:
    lines = [f"# Tuned stability knobs: {seq} (tuning stream)", "", machine, "",
             "| method | knob | chosen | objective | grid | edge |", "|---|---|---|---|---|---|"]
    for m, e in entries.items():
        lines.append(f"| {m} | method.{e['option']} | {e['chosen']:g} | {e['objective']} | "
                     f"{', '.join(f'{v:g}' for v in e['grid'])} | {e['edge'] or '—'} |")
    for m, e in entries.items():
        front = set(non_dominated(e["points"]))
        lines += ["", f"## {m}: method.{e['option']} (tuning seeds {', '.join(map(str, e['seeds']))})", "",
                  "| value | Δ vs finetune (%) | plasticity (%) | stability: BWT (%) | forgetting (%) | n | frontier |",
                  "|---|---|---|---|---|---|---|"]
        for s in e["points"]:
            star = " **(chosen)**" if s["value"] == e["chosen"] else ""
            lines.append(
                f"| {s['value']:g}{star} | {_f(s['delta']['mean'])} ± {_f(s['delta']['std'])} | "
                f"{_f(s['plasticity']['mean'])} ± {_f(s['plasticity']['std'])} | "
                f"{_f(s['stability']['mean'])} ± {_f(s['stability']['std'])} | "
                + ", ".join(f"{t} {_f(v['mean'], '.1f')} ± {_f(v['std'], '.1f')}" for t, v in s.get("forgetting", {}).items())
                + f" | {s['delta']['n']} | "
                f"{'yes' if s['value'] in front else ''} |")
    if missing:
        lines += ["", "Runs not finished (left out):", *[f"- {m}" for m in missing]]
    return "\n".join(lines) + "\n"


def write(folder: Path, seq: str, entries: Dict[str, dict], missing: List[str], machine: str) -> Dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = {"yaml": folder / "tuned.yaml", "md": folder / "tune.md", "frontier": folder / "frontier.png",
           "delta": folder / "delta_vs_weight.png", "forgetting": folder / "forgetting_vs_weight.png"}
    atomic_write_text(out["yaml"], yaml.safe_dump({"sequence": seq, "methods": entries}, sort_keys=False,
                                                  default_flow_style=None, width=110))
    atomic_write_text(out["md"], markdown(seq, entries, missing, machine))
    if entries:
        plot_frontier(entries, out["frontier"])
        plot_delta_vs_weight(entries, out["delta"])
        plot_forgetting_vs_weight(entries, out["forgetting"])
    return out
