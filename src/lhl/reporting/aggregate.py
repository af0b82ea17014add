"""Multi-seed comparison of methods: final metrics, Δ against a reference and forgetting, as
mean ± sample std over each method's runs."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Mapping, Sequence, Tuple, Union

from lhl.core.errors import UsageError
from lhl.reporting.comparison import Comparison, MethodSummary
from lhl.reporting.paired import paired_deltas
from lhl.reporting.render import compare_markdown
from lhl.reporting.tuning import new_task_delta
from lhl.runs.results import Metrics, PathLike, Results
from lhl.reporting.ranks import backward_transfer, delta_after_phases, mean_rank, pairs_by_seed
from lhl.reporting.scores import delta, delta_per_task, final_metrics, forgetting, mean_std




def _nested_stats(per_run: Sequence[Metrics]) -> Dict[str, Dict[str, dict]]:
    """{task: {metric: stats}} over runs, for the (task, metric) pairs every run has."""
    first = per_run[0]
    return {t: {m: mean_std([r[t][m] for r in per_run]) for m in ms if all(m in r.get(t, {}) for r in per_run)}
            for t, ms in first.items() if all(t in r for r in per_run)}


def _reference_dirs(run_dirs_by_method: Mapping[str, Sequence[PathLike]],
                    ref: Union[None, str, PathLike, Sequence[PathLike]]) -> List[PathLike]:
    """The reference's run folders: a method's, one folder, or folders over seeds."""
    if ref is None:
        return []
    if isinstance(ref, str) and ref in run_dirs_by_method:
        return list(run_dirs_by_method[ref])
    if isinstance(ref, (str, Path)):
        return [ref]
    return list(ref)


def compare(run_dirs_by_method: Mapping[str, Sequence[PathLike]],
            ref: Union[None, str, PathLike, Sequence[PathLike]] = None) -> Tuple[str, Comparison]:
    """Final metrics (mean ± sample std over seeds) per method and task, Δ vs a reference and
    forgetting, mean rank (MR), relative backward transfer and Δ after every phase. `ref` is a
    method name of `run_dirs_by_method`, a run folder, or folders over seeds. Δ pairs each run with
    the reference run of the same seed when the reference has every seed of the method
    (`delta_pairing: "seed"`), else compares with the mean of the reference's final metrics
    (`"mean"`). MR ranks every method (the reference among them) on every (task, metric)."""
    runs = {m: [Results.load(d) for d in dirs] for m, dirs in run_dirs_by_method.items()}
    empty = [m for m, rs in runs.items() if not rs]
    if empty:
        raise UsageError(f"compare: no run folders given for method(s) {empty}")
    ref_dirs = _reference_dirs(run_dirs_by_method, ref)
    ref_final, ref_runs = None, [Results.load(d) for d in ref_dirs]
    if ref_dirs:
        ref_stats = _nested_stats([final_metrics(r) for r in ref_runs])
        ref_final = {t: {m: s["mean"] for m, s in ms.items()} for t, ms in ref_stats.items()}

    first = next(iter(runs.values()))[0]
    tasks, directions, mains = list(first.tasks), {}, {}
    for rs in runs.values():
        for r in rs:
            tasks += [t for t in r.tasks if t not in tasks]
            for t in r.tasks:
                directions.setdefault(t, dict(r.meta["directions"].get(t, {})))
                mains.setdefault(t, r.main_metric(t))

    methods: Dict[str, MethodSummary] = {}
    for name, rs in runs.items():
        bwt = [b for b in (backward_transfer(r) for r in rs) if b is not None]
        entry = MethodSummary(
            runs=[str(d) for d in run_dirs_by_method[name]], seeds=[r.meta.get("seed") for r in rs],
            final=_nested_stats([final_metrics(r) for r in rs]), forgetting=_nested_stats([forgetting(r) for r in rs]),
            backward_transfer=mean_std(bwt) if bwt else None,
            forgetting_rel=_nested_stats([forgetting(r, relative=True) for r in rs]))
        if ref_final is not None:
            paired = pairs_by_seed(rs, ref_runs)
            refs = [final_metrics(next(x for x in ref_runs if x.meta.get("seed") == r.meta.get("seed")))
                    if paired else ref_final for r in rs]
            deltas = [delta(r, b) for r, b in zip(rs, refs)]
            entry.delta, entry.delta_pairing = mean_std(deltas), "seed" if paired else "mean"
            entry.delta_per_seed = dict(zip(map(str, entry.seeds), deltas))
            per_task = [delta_per_task(r, b) for r, b in zip(rs, refs)]
            entry.delta_per_task = {t: mean_std([p[t] for p in per_task]) for t in per_task[0]}
            phases = [delta_after_phases(r, next((x for x in ref_runs if x.meta.get("seed") == r.meta.get("seed")),
                                                 ref_final) if paired else ref_final) for r in rs]
            entry.delta_after_phases = [
                mean_std(col) if all(v is not None for v in col) else None for col in zip(*phases)]
            if paired:  # the new task's Δ right after its phase against the reference's (reporting.tuning)
                plastic = [new_task_delta(r, next(x for x in ref_runs if x.meta.get("seed") == r.meta.get("seed")))
                           for r in rs]
                entry.plasticity = mean_std([v for v in plastic if v is not None]) if any(
                    v is not None for v in plastic) else None
        methods[name] = entry
    means = {n: {t: {m: s["mean"] for m, s in ms.items()} for t, ms in e.final.items()} for n, e in methods.items()}
    for n, r in mean_rank(means, directions).items():
        methods[n].mean_rank = r

    for n, p in paired_deltas(methods).items():
        methods[n].paired_delta = p

    every_run = {str(Path(d).resolve()): r for m, rs in runs.items() for d, r in zip(run_dirs_by_method[m], rs)}
    for d, r in zip(ref_dirs, ref_runs):
        every_run.setdefault(str(Path(d).resolve()), r)  # the reference's runs, once when also a method
    obj = Comparison(tasks, directions, mains, methods, [r.machines for r in every_run.values()],
                     None if ref_final is None else {"runs": [str(d) for d in ref_dirs], "final": ref_final})
    return compare_markdown(obj), obj
