"""Paper-shaped tables from a comparison (`aggregate.compare`'s object): one row per method,
every metric of every task as mean ± std over seeds, Δ (%) against the reference, the mean rank
(MR) and, against one chosen method (HAD), a paired t-test over seeds on the per-seed Δ (the
mean paired difference with its 95% interval and two-sided p). Markdown, CSV and LaTeX."""
from __future__ import annotations

import csv
import io
import math
from typing import Dict, List, Optional

from lhl.reporting.comparison import Comparison
from lhl.reporting.paired import paired_against
from lhl.reporting.render import arrow, table

__all__ = ["paper_rows", "paper_markdown", "paper_csv", "paper_latex"]


def _columns(obj: Comparison) -> List[tuple]:
    """[(task, metric, higher)] in the sequence's order."""
    return [(t, m, h) for t in obj.tasks for m, h in obj.directions.get(t, {}).items()]


def paper_rows(obj: Comparison, against: str) -> List[dict]:
    """One plain row per method: the numbers every format renders."""
    tests = paired_against(obj.methods, against)
    rows = []
    for name, e in obj.methods.items():
        cells = {f"{t}/{m}": e.final.get(t, {}).get(m) for t, m, _ in _columns(obj)}
        rows.append({"method": name, "n": len(e.seeds), "cells": cells, "delta": e.delta,
                     "mean_rank": e.mean_rank, "test": tests.get(name)})
    return rows


def _pm(s: Optional[dict], spec: str, scale: float = 1.0) -> str:
    if not s or s.get("mean") is None or math.isnan(s["mean"]):
        return "—"
    mean = f"{s['mean'] * scale:{spec}}"
    return mean if s.get("n", 2) < 2 else f"{mean} ± {s['std'] * scale:{spec.lstrip('+')}}"


def _test(t: Optional[dict]) -> str:
    if not t or t.get("mean") is None:
        return "—"
    if t.get("ci95") is None:
        return f"{t['mean']:+.2f}"
    lo, hi = t["ci95"]
    return f"{t['mean']:+.2f} [{lo:+.2f}, {hi:+.2f}] p={t['p']:.3f}"


def _rank(v) -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.2f}"


def paper_markdown(obj: Comparison, against: str, title: str) -> str:
    cols = _columns(obj)
    header = ["method"] + [f"{t} {m}{arrow(h)}" for t, m, h in cols] + ["Δ % ↑", "MR ↓", f"Δ − Δ({against}) [95% CI]"]
    rows = [[f"{r['method']} (n={r['n']})"] + [_pm(r["cells"][f"{t}/{m}"], ".4f") for t, m, _ in cols]
            + [_pm(r["delta"], "+.2f"), _rank(r["mean_rank"]), _test(r["test"])] for r in paper_rows(obj, against)]
    ref = obj.reference or {}
    notes = [f"Mean ± sample std over seeds after the last phase. Δ against {ref.get('label', 'the reference')} "
             "(LibMTL's form, per-seed pairs when the seeds match); MR = mean rank over every metric of "
             "every task (1 = best, ties averaged); the last column is a paired t-test over seeds on the "
             f"per-seed Δ against {against} (t distribution: scipy when installed, else lhl's own)."]
    return "\n".join([f"# {title}", ""] + table(header, rows) + [""] + notes + [""])


def paper_csv(obj: Comparison, against: str) -> str:
    cols = _columns(obj)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["method", "n"] + [f"{t}/{m}/{k}" for t, m, _ in cols for k in ("mean", "std")]
               + ["delta_mean", "delta_std", "mean_rank", f"diff_vs_{against}", "ci95_low", "ci95_high", "p"])
    for r in paper_rows(obj, against):
        vals = []
        for t, m, _ in cols:
            s = r["cells"][f"{t}/{m}"] or {}
            vals += [s.get("mean"), s.get("std")]
        d, t = r["delta"] or {}, r["test"] or {}
        ci = t.get("ci95") or [None, None]
        w.writerow([r["method"], r["n"]] + vals + [d.get("mean"), d.get("std"), r["mean_rank"], t.get("mean"),
                                                     ci[0], ci[1], t.get("p")])
    return buf.getvalue()


def _tex(s: str) -> str:
    s = s.replace("\\", "\\textbackslash{}").replace("_", "\\_").replace("%", "\\%").replace("&", "\\&")
    return s.replace("Δ", "$\\Delta$").replace("—", "--")


def _num(s: str) -> str:
    return s.replace("±", "$\\pm$").replace("—", "--")


def paper_latex(obj: Comparison, against: str, caption: str) -> str:
    cols = _columns(obj)
    up, down = "$\\uparrow$", "$\\downarrow$"
    versus = "$\\Delta-\\Delta_{\\text{" + _tex(against) + "}}$"
    head = ["Method"] + [f"{_tex(t)} {_tex(m)} {up if h else down}" for t, m, h in cols] \
        + ["$\\Delta$ (\\%) " + up, "MR " + down, versus]
    lines = ["\\begin{table}[t]", "\\centering", f"\\caption{{{_tex(caption)}}}",
             "\\begin{tabular}{l" + "c" * (len(head) - 1) + "}", "\\toprule", " & ".join(head) + " \\\\", "\\midrule"]
    for r in paper_rows(obj, against):
        cells = [_tex(r["method"])] + [_num(_pm(r["cells"][f"{t}/{m}"], ".4f")) for t, m, _ in cols]
        cells += [_num(_pm(r["delta"], "+.2f")), _num(_rank(r["mean_rank"])), _tex(_test(r["test"]))]
        lines.append(" & ".join(cells) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}", "\\end{table}", ""]
    return "\n".join(lines)
