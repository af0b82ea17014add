"""`lhl paper table=main|ablation seq=NAME seeds="0 1 2"`: the paper's tables from one command.

It runs (or with `aggregate=true` only collects, never training) the table's matrix of methods x
seeds through `lhl compare` (so finished runs are reused and killed ones resume), then writes the
paper-shaped tables beside that comparison's `compare.json`: `paper_<table>.md`, `.csv`, `.tex`.

* `table=main`: every method of the paper that lhl has: finetune (naive; the reference of Δ),
  joint, ewc, lwf, had_faithful, had, had_paper, and der, derpp, icarl, sgp, spg when registered;
  the paired test is against had_paper (HAD as the paper states it).
* `table=ablation`: had_paper and its ablation presets, Δ relative to full HAD (had_paper).
"""
from __future__ import annotations

import shlex
from pathlib import Path
from typing import Dict, List, Optional

from lhl.config import ConfigError
from lhl.core.io import atomic_write_json, atomic_write_text
from lhl.core.registry import METHODS
from lhl.runs.identity import run_folder_of
from lhl.reporting.comparison import COMPARE_JSON, Comparison
from lhl.reporting.paired import paired_against
from lhl.reporting.paper_tables import paper_csv, paper_latex, paper_markdown
from lhl.tools import compare as cmp

USAGE = """usage: lhl paper table=main|ablation seq=NAME [seeds="0 1 2"] [aggregate=true] [methods="..."]
                 [ref=METHOD] [against=METHOD] [key=value ...]

  table=main        finetune joint ewc lwf had_faithful had had_paper (+ der derpp icarl sgp spg when
                    registered); Δ against finetune, paired test against had_paper
  table=ablation    had_paper and had_paper_{no_sg,no_db,arith,bins5,bins10,bins15,sobel_pred,
                    old_decoders_only,new_first,new_decoder_only}; Δ against had_paper
  aggregate=true    never train: tabulate the finished runs (the missing ones are named)
  jobs=N            N runs at a time, as lhl compare jobs=N
  tuned=FILE        each method at its weight chosen by `lhl tune` (its tuned.yaml), as lhl compare tuned=
  methods= ref= against=   override the table's methods, Δ reference, paired-test baseline
  key=value         any `lhl run` override, applied to every run (e.g. train.max_steps=20)
"""

MAIN = ["finetune", "joint", "ewc", "lwf", "had_faithful", "had", "had_paper"]
MAIN_OPTIONAL = ["der", "derpp", "icarl", "sgp", "spg"]
ABLATION = ["had_paper", "had_paper_no_sg", "had_paper_no_db", "had_paper_arith", "had_paper_bins5",
            "had_paper_bins10", "had_paper_bins15", "had_paper_sobel_pred", "had_paper_old_decoders_only",
            "had_paper_new_first", "had_paper_new_decoder_only"]
TABLES = {"main": ("finetune", "had_paper"), "ablation": ("had_paper", "had_paper")}


def table_methods(table: str) -> List[str]:
    """The table's methods; main adds the optional baselines that are registered."""
    if table == "ablation":
        return list(ABLATION)
    return MAIN + [m for m in MAIN_OPTIONAL if m in METHODS]


def parse(argv: List[str]) -> dict:
    opts = dict(table=None, methods=None, ref=None, against=None, rest=[])
    for arg in argv:
        key, _, value = arg.partition("=")
        if key in ("table", "ref", "against"):
            opts[key] = value or None
        elif key == "methods":
            opts["methods"] = [w for w in shlex.split(value.replace(",", " ")) if w] or None
        else:
            opts["rest"].append(arg)
    if opts["table"] not in TABLES:
        raise ConfigError(f"lhl paper: table= must be one of {sorted(TABLES)}, got {opts['table']!r}")
    ref, against = TABLES[opts["table"]]
    opts["ref"] = opts["ref"] or ref
    opts["against"] = opts["against"] or against
    opts["methods"] = opts["methods"] or table_methods(opts["table"])
    return opts


def write_tables(compare_json: Path, table: str, against: str, ref: str, order: Optional[List[str]] = None
                 ) -> Dict[str, Path]:
    """paper_<table>.{md,csv,tex} (and .json: the paired tests) beside `compare_json`, the rows
    in `order` (the table's method order; the JSON file has its keys sorted)."""
    obj = Comparison.load(compare_json)
    if order:
        ms = obj.methods
        obj.methods = {n: ms[n] for n in [*order, *sorted(ms)] if n in ms}
    if obj.reference is not None:
        obj.reference["label"] = ref
    title = {"main": "Main table", "ablation": f"Ablations (Δ relative to {ref})"}[table]
    folder = Path(compare_json).parent
    out = {"md": folder / f"paper_{table}.md", "csv": folder / f"paper_{table}.csv",
           "tex": folder / f"paper_{table}.tex", "json": folder / f"paper_{table}.json"}
    atomic_write_text(out["md"], paper_markdown(obj, against, title))
    atomic_write_text(out["csv"], paper_csv(obj, against))
    atomic_write_text(out["tex"], paper_latex(obj, against, title))
    atomic_write_json(out["json"], {"table": table, "reference": ref, "against": against,
                                    "paired_tests": paired_against(obj.methods, against),
                                    "mean_rank": {n: e.mean_rank for n, e in obj.methods.items()}})
    return out


def cli(argv: List[str]) -> int:
    if any(a in ("-h", "--help", "help") for a in argv):
        print(USAGE)
        return 0
    try:
        opts = parse(argv)
    except ConfigError as e:
        print(e)
        return 2
    compare_argv = [f"methods={' '.join(opts['methods'])}", f"ref={opts['ref']}", *opts["rest"]]
    copts = cmp.parse(compare_argv)
    configs = cmp.plan(copts)
    groups: Dict[str, List[Path]] = {}
    for label, _, cfg in configs:
        groups.setdefault(label, []).append(run_folder_of(cfg).root)
    out_dir = cmp.compare_dir(Path(configs[-1][2].run.out_dir), copts["seq"], groups, copts["ref"])
    failed = []
    if not copts["aggregate"] and copts["jobs"] > 1:  # as lhl compare jobs=N: N runs side by side
        from lhl.tools.compare_jobs import prepare, run_jobs

        prepare(configs)
        failed = run_jobs(configs, copts["jobs"], out_dir / "logs")
    elif not copts["aggregate"]:
        from lhl.engine.runner import run

        for label, _, cfg in configs:
            print(f"\n##### paper {opts['table']}: {copts['seq']} / {label} / seed {cfg.run.seed}", flush=True)
            run(cfg)
    if failed:
        print("lhl paper: runs failed (their logs name the error): "
              + ", ".join(f"{label} seed {seed} (exit {c})" for label, seed, c in failed))
    rc = cmp.aggregate(groups, copts["ref"], out_dir)
    if rc:
        return rc
    paths = write_tables(out_dir / COMPARE_JSON, opts["table"], opts["against"], opts["ref"], opts["methods"])
    print((out_dir / f"paper_{opts['table']}.md").read_text(encoding="utf-8"))
    print("paper tables written: " + ", ".join(str(p) for p in paths.values()))
    return 0
