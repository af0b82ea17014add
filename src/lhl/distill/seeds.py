"""`lhl distill --seeds 0 1 2 3 4`: one `lhl distill` run per seed, then one table over the seeds.

Seed k runs in `<out_dir>/<name>_seed<k>` with `run.seed=k` and its own teacher: trained in or
reused from that folder, or read from `run.teacher_ckpt` with `{seed}` replaced by k (to reuse the
teachers of another sweep); rows already in a seed's folder with the same config and teacher are kept, so an
interrupted sweep resumes where it stopped. The summary `<out_dir>/<name>_seeds.{md,json}` gives, per
row, mIoU and pixel accuracy as mean ± sample std over the seeds, and two paired comparisons over
the same seeds (same teacher, initialisation and batch order within a seed): the mIoU gain over the
student trained alone, and the mIoU difference of HeteroAKD minus the row, each with its 95 %
Student-t interval. A difference whose interval excludes 0 is marked with `*` (`render.interval_cell`).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from omegaconf import DictConfig, OmegaConf

from lhl.core.io import atomic_write_json, atomic_write_text
from lhl.distill.config import run_name
from lhl.distill.methods import kd_methods, label
from lhl.reporting.aggregate import mean_std
from lhl.reporting.ranks import paired_test
from lhl.reporting.render import interval_cell, table
from lhl.runs.folder import RESULTS_JSON

#: the rows every paired column is taken against (registry names)
ALONE, HETEROAKD = "none", "heteroakd"


def seed_config(cfg: DictConfig, base: str, seed: int) -> DictConfig:
    """`cfg` for seed `seed`: `run.seed` set and the folder `<base>_seed<seed>`."""
    out = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    out.run.seed, out.run.name = int(seed), f"{base}_seed{int(seed)}"
    if out.run.teacher_ckpt:
        if "{seed}" not in out.run.teacher_ckpt:
            raise ValueError(f"run.teacher_ckpt={out.run.teacher_ckpt} with --seeds: one teacher would serve every "
                             "seed; put {seed} in the path (e.g. runs/kd/NAME_seed{seed}/teacher.ckpt) to reuse "
                             "each seed's teacher, or leave it unset to train one per seed folder")
        out.run.teacher_ckpt = out.run.teacher_ckpt.replace("{seed}", str(int(seed)))
    return out


def percent(values: Sequence[float]) -> List[float]:
    return [100.0 * v for v in values]


def summarise(per_seed: Dict[int, Dict]) -> Dict:
    """Mean ± std and the paired comparisons over the seeds whose results hold a row.

    `per_seed` maps a seed to its `results.json`. A row's paired columns use the seeds that have
    both it and the row it is compared with."""
    seeds = sorted(per_seed)
    rows: Dict[str, Dict] = {}
    for key in ("teacher",) + kd_methods():
        have = [s for s in seeds if key in per_seed[s]]
        if not have:
            continue
        row = {"model": per_seed[have[0]][key]["model"], "seeds": have,
               "miou": percent([per_seed[s][key]["miou"] for s in have]),
               "pixacc": percent([per_seed[s][key]["pixacc"] for s in have])}
        row["miou_stats"], row["pixacc_stats"] = mean_std(row["miou"]), mean_std(row["pixacc"])
        if key == "teacher" and all("train_miou" in per_seed[s][key] for s in have):
            row["train_miou_stats"] = mean_std(percent([per_seed[s][key]["train_miou"] for s in have]))
            row["train_pixacc_stats"] = mean_std(percent([per_seed[s][key]["train_pixacc"] for s in have]))
        # (field, minuend, subtrahend): the row minus the student alone, HeteroAKD minus the row
        for field, a, b in (("vs_alone", key, ALONE), ("heteroakd_minus", HETEROAKD, key)):
            if key == "teacher" or a == b:
                continue
            both = [s for s in have if a in per_seed[s] and b in per_seed[s]]
            if both:
                row[field] = paired_test(percent([per_seed[s][a]["miou"] for s in both]),
                                         percent([per_seed[s][b]["miou"] for s in both]))
                row[field]["seeds"] = both
        rows[key] = row
    return {"seeds": seeds, "rows": rows}


def summary_markdown(summary: Dict, title: str) -> str:
    """The table of `summarise`: one line per row, mean ± std, then the paired columns."""
    n = len(summary["seeds"])
    header = ["run", "model", "mIoU (%)", "pixel acc (%)", "mIoU gain over alone, paired [95 % CI]",
              "HeteroAKD − row, paired [95 % CI]"]
    body = []
    for key, r in summary["rows"].items():
        m, p = r["miou_stats"], r["pixacc_stats"]
        cells = [label(key), r["model"], f"{m['mean']:.2f} ± {m['std']:.2f}", f"{p['mean']:.2f} ± {p['std']:.2f}",
                 interval_cell(r["vs_alone"]) if "vs_alone" in r else "",
                 interval_cell(r["heteroakd_minus"]) if "heteroakd_minus" in r else ""]
        if len(r["seeds"]) != n:
            cells[0] += f" (seeds {', '.join(map(str, r['seeds']))})"
        body.append(cells)
    lines = [f"# {title}", "", f"Seeds {', '.join(map(str, summary['seeds']))} (n = {n}); mean ± sample std "
             "over the seeds; paired differences are in mIoU points over the same seeds, * where the 95 % "
             "interval excludes 0.", ""]
    lines += table(header, body)
    t = summary["rows"].get("teacher", {})
    if "train_miou_stats" in t:
        m, p = t["train_miou_stats"], t["train_pixacc_stats"]
        lines += ["", f"The teacher on the training images (those the students are distilled on): mIoU "
                  f"{m['mean']:.2f} ± {m['std']:.2f}, pixel accuracy {p['mean']:.2f} ± {p['std']:.2f}."]
    return "\n".join(lines) + "\n"


def read_seed_results(out_dir: Path, base: str, seeds: Optional[Sequence[int]] = None) -> Dict[int, Dict]:
    """{seed: results.json} of each `<base>_seed<k>` folder that has one (every such folder when
    `seeds` is None)."""
    if seeds is None:
        tails = (p.parent.name[len(base) + len("_seed"):] for p in out_dir.glob(f"{base}_seed*/results.json"))
        seeds = sorted(int(t) for t in tails if t.isdigit())
    found = {}
    for s in seeds:
        path = out_dir / f"{base}_seed{int(s)}" / RESULTS_JSON
        if path.exists():
            found[int(s)] = json.loads(path.read_text())
    return found


def run_seeds(cfg: DictConfig, seeds: Sequence[int], run_one=None) -> Path:
    """Run (or resume) every seed, then write the summary; returns the summary's .md path."""
    if run_one is None:
        from lhl.distill.run import run as run_one
    if len(set(seeds)) != len(seeds) or not seeds:
        raise ValueError(f"--seeds {' '.join(map(str, seeds))}: give distinct seeds, e.g. --seeds 0 1 2 3 4")
    base, out_dir = run_name(cfg), Path(cfg.run.out_dir)
    configs = [seed_config(cfg, base, s) for s in seeds]  # all checked before the first run
    for seed_cfg in configs:
        print(f"lhl distill: seed {seed_cfg.run.seed} -> {out_dir / seed_cfg.run.name}")
        run_one(seed_cfg)
    return write_summary(cfg, out_dir, base, seeds)


def write_summary(cfg: DictConfig, out_dir: Path, base: str, seeds: Sequence[int]) -> Path:
    """`<base>_seeds.json` and `.md` in `out_dir`, over the seed folders that exist."""
    per_seed = read_seed_results(out_dir, base, seeds)
    if not per_seed:
        raise FileNotFoundError(f"{out_dir}: no {base}_seed<k>/results.json for seeds {list(seeds)}")
    summary = summarise(per_seed)
    teacher = cfg.teacher.name
    title = f"Distillation on {cfg.data.name}: {teacher} -> {cfg.student.name}, {len(per_seed)} seeds"
    md = out_dir / f"{base}_seeds.md"
    atomic_write_json(out_dir / f"{base}_seeds.json", summary)
    atomic_write_text(md, summary_markdown(summary, title))
    return md


def parse_seeds(text: Optional[str]) -> Optional[List[int]]:
    """`--seeds "0 1 2"` or `--seeds 0,1,2` into ints (None when not given)."""
    if not text:
        return None
    try:
        return [int(tok) for tok in str(text).replace(",", " ").split()]
    except ValueError as err:
        raise ValueError(f"--seeds {text!r}: seeds are integers, e.g. --seeds '0 1 2 3 4'") from err
