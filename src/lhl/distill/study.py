"""One distiller's row across several `lhl distill --seeds` sweeps (studies of one setting each).

    lhl distill-study --out runs/kd --row heteroakd --ref NAME NAME2 NAME3 ...

Each NAME is the `--name` of a sweep (its folders `NAME_seed<k>`, made with `--seeds`). Per sweep,
the table gives the row's mIoU (mean ± std over the seeds), the student alone of that sweep, the
row's paired gain over it, and the paired difference of the row against the same row of the
reference sweep (`--ref`, default the first NAME), each with its 95 % interval over the seeds both
sweeps have. It reads the seed folders only; nothing is trained. Written to stdout and, with
`--write FILE`, atomically to FILE (.md) and FILE's .json.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from lhl.core.errors import MissingInput
from lhl.core.io import atomic_write_json, atomic_write_text
from lhl.distill.methods import label
from lhl.distill.seeds import ALONE, parse_seeds, percent, read_seed_results
from lhl.reporting.aggregate import mean_std
from lhl.reporting.ranks import paired_test
from lhl.reporting.render import interval_cell, table


def _seed_rows(out_dir: Path, name: str) -> Dict[int, Dict]:
    """{seed: results.json} of every `name_seed<k>` folder; an error naming the command when none."""
    found = read_seed_results(out_dir, name)
    if not found:
        raise MissingInput(f"{out_dir}: no {name}_seed<k>/results.json (run lhl distill --seeds ... --name {name})")
    return found


def study(out_dir: Path, names: Sequence[str], row: str, ref: Optional[str] = None,
          seeds: Optional[Sequence[int]] = None) -> Dict:
    """The row of each sweep, its gain over that sweep's student alone and its difference to `ref`'s row."""
    ref = ref or names[0]
    sweeps = {n: _seed_rows(out_dir, n) for n in dict.fromkeys([ref, *names])}
    if seeds is not None:
        sweeps = {n: {s: r for s, r in v.items() if s in seeds} for n, v in sweeps.items()}
    out = {"row": row, "ref": ref, "sweeps": {}}
    for name in names:
        runs = sweeps[name]
        have = sorted(s for s, r in runs.items() if row in r)
        entry: Dict = {"seeds": have}
        if have:
            mine = percent([runs[s][row]["miou"] for s in have])
            entry["miou"] = mean_std(mine)
            alone = [s for s in have if ALONE in runs[s]]
            if alone and row != ALONE:
                entry[ALONE] = mean_std(percent([runs[s][ALONE]["miou"] for s in alone]))
                entry["vs_alone"] = paired_test(percent([runs[s][row]["miou"] for s in alone]),
                                                percent([runs[s][ALONE]["miou"] for s in alone]))
            both = [s for s in have if row in sweeps[ref].get(s, {})]
            if name != ref and both:
                entry["vs_ref"] = paired_test(percent([runs[s][row]["miou"] for s in both]),
                                              percent([sweeps[ref][s][row]["miou"] for s in both]))
                entry["vs_ref"]["seeds"] = both
        out["sweeps"][name] = entry
    return out


def study_markdown(obj: Dict) -> str:
    """The table of `study`."""
    row = label(obj["row"])
    header = ["sweep (--name)", "seeds", f"{row} mIoU (%)", "student alone mIoU (%)",
              f"{row} − alone [95 % CI]", f"{row} − {row} of {obj['ref']} [95 % CI]"]
    body: List[List[str]] = []
    for name, e in obj["sweeps"].items():
        stat = (lambda m: f"{m['mean']:.2f} ± {m['std']:.2f}" if m else "")
        body.append([name, ", ".join(map(str, e["seeds"])), stat(e.get("miou")), stat(e.get(ALONE)),
                     interval_cell(e["vs_alone"]) if "vs_alone" in e else "",
                     interval_cell(e["vs_ref"]) if "vs_ref" in e else ""])
    return "\n".join(table(header, body)) + "\n"


def cli(argv: Optional[Sequence[str]] = None) -> int:
    """`lhl distill-study ...`: returns the exit code."""
    p = argparse.ArgumentParser(prog="lhl distill-study", description=__doc__.split("\n\n")[0])
    p.add_argument("names", nargs="+", help="the --name of each `lhl distill --seeds` sweep")
    p.add_argument("--out", default="runs/kd", help="their parent folder (run.out_dir)")
    p.add_argument("--row", default="heteroakd", help="the distiller to compare (run.kd name)")
    p.add_argument("--ref", help="the sweep every other is compared with (default: the first)")
    p.add_argument("--seeds", help="only these seeds ('0 1 2')")
    p.add_argument("--write", help="also write the table to this .md (and its .json)")
    a = p.parse_args(argv)
    obj = study(Path(a.out), a.names, a.row, a.ref, parse_seeds(a.seeds))
    text = study_markdown(obj)
    print(text)
    if a.write:
        atomic_write_text(a.write, text)
        atomic_write_json(Path(a.write).with_suffix(".json"), obj)
    return 0


if __name__ == "__main__":
    raise SystemExit(cli())
