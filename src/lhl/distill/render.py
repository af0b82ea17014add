"""The results table of `lhl distill`: results.json and results.md in the run folder."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional

from omegaconf import DictConfig

from lhl.core.io import atomic_write_json, atomic_write_text
from lhl.distill.methods import kd_methods, label
from lhl.runs.folder import CONFIG_YAML, RESULTS_JSON, RESULTS_MD


def render_markdown(results: Dict, cfg: DictConfig, root: Optional[Path] = None) -> str:
    """One table: teacher, then each student run; mIoU and pixel accuracy in percent, and the
    mIoU gain over the student trained alone (points) when that run is there; then the missing rows."""
    alone = results.get("none", {}).get("miou")
    methods = kd_methods()
    lines = [
        f"# Distillation on {cfg.data.name}: {results.get('teacher', {}).get('model', cfg.teacher.name)} -> "
        f"{cfg.student.name}", "",
        "| run | model | params (M) | mIoU (%) | pixel acc (%) | mIoU vs alone | time (s) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for key in ("teacher",) + methods:
        if key not in results:
            continue
        r = results[key]
        gain = f"{100 * (r['miou'] - alone):+.2f}" if alone is not None and key != "teacher" else ""
        lines.append(
            f"| {label(key)} | {r['model']} | {r['params_m']:.3f} | {100 * r['miou']:.2f} | "
            f"{100 * r['pixacc']:.2f} | {gain} | {r['train_s']:.1f} |"
        )
    teacher = results.get("teacher", {})
    if "train_miou" in teacher:
        lines += ["", f"The teacher on the training images (those the students are distilled on): mIoU "
                  f"{100 * teacher['train_miou']:.2f}, pixel accuracy {100 * teacher['train_pixacc']:.2f}."]
    missing = [k for k in methods if k not in results]
    if missing:
        config = (root / CONFIG_YAML) if root is not None else f"<run folder>/{CONFIG_YAML}"
        lines += ["", f"Missing rows: {', '.join(label(k) for k in missing)}. To add them (same config, "
                  "same teacher), run:", ""]
        lines += [f"    lhl distill --config {config} --kd {k}" for k in missing]
        lines += ["", f"(or `make distill KD={missing[0]} ARGS=\"--config {config}\"`, and so on)."]
    return "\n".join(lines) + "\n"


def write_results(root: Path, results: Dict, cfg: DictConfig) -> None:
    """results.json and its table results.md."""
    atomic_write_json(root / RESULTS_JSON, results)
    atomic_write_text(root / RESULTS_MD, render_markdown(results, cfg, root))
