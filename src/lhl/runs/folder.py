"""Every path of a lifelong run's folder, in one place, and the phase checkpoint's format. Every
other module names these files through the constants and `RunFolder` here, never by their text.

```
<root>/config.yaml                 the resolved config of the run's first start
<root>/../overrides.yaml           the results-relevant overrides of a default-named run (lhl.runs.identity)
<root>/results.json, results.md    R[phase][task][metric] (lhl.runs.results)
<root>/forgetting.png              each task's main metric across phases
<root>/curves.json                 learning curves within each phase (eval.every_n_epochs; lhl curves)
<root>/curves.png, curves.md       their plot and convergence table (lhl curves)
<root>/phase_<i>/phase.ckpt        network (and its architecture), heads, the method's state, the global step after phase i
<root>/phase_<i>/gallery.png       input, ground truth and prediction of a few val images
<root>/phase_<i>/requeue.ckpt      the SLURM requeue checkpoint of an unfinished phase (SIGUSR1)
<root>/phase_<i>/last.ckpt         the periodic mid-phase checkpoint of an unfinished phase
<root>/phase_<i>/hpc_ckpt_*.ckpt   Lightning's own SLURM checkpoints (older lhl versions; removed)
<root>/run.log                     the traceback of every failed attempt (lhl run)
<root>/run.lock                    the live run's holder record and heartbeat (lhl.core.locks)
<root>/phase_<i>/*.ckpt.corrupt    a checkpoint found truncated or corrupt at resume, set aside
<root>/wandb_run_id.txt            the W&B run id: a requeued or resumed sequence continues that run
<root>/logs/phase_<i>/metrics.csv  the CSV log of phase i (tb/ for TensorBoard)
```
"""
from __future__ import annotations

import os
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional

from lhl.core.io import atomic_torch_save

CONFIG_YAML = "config.yaml"
OVERRIDES_FILE = "overrides.yaml"
RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"
FORGETTING_PNG = "forgetting.png"
CURVES_JSON = "curves.json"
CURVES_PNG = "curves.png"
PHASE_CKPT = "phase.ckpt"

PHASE_CKPT_FORMAT = 2  # 2: the network alone (no teacher copy: the next phase makes it anew)


@dataclass(frozen=True)
class RunFolder:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / CONFIG_YAML

    @property
    def results_json(self) -> Path:
        return self.root / RESULTS_JSON

    @property
    def forgetting_plot(self) -> Path:
        return self.root / FORGETTING_PNG

    @property
    def results_md(self) -> Path:
        return self.root / RESULTS_MD

    @property
    def curves_json(self) -> Path:
        return self.root / CURVES_JSON

    @property
    def overrides(self) -> Path:
        """Beside the seed folders of a default-named run: what its configuration changes."""
        return self.root.parent / OVERRIDES_FILE

    def phase_dir(self, index: int) -> Path:
        return self.root / f"phase_{index}"

    def phase_ckpt(self, index: int) -> Path:
        return self.phase_dir(index) / PHASE_CKPT

    def gallery(self, index: int) -> Path:
        return self.phase_dir(index) / "gallery.png"

    def hpc_checkpoints(self, index: int):
        return sorted(self.phase_dir(index).glob("hpc_ckpt_*.ckpt"))

    @property
    def log(self) -> Path:
        return self.root / "run.log"

    def log_failure(self, err: BaseException) -> Optional[Path]:
        """Append `err`'s traceback (with the time and the process's rank) to `run.log`, when the
        run folder exists (a failure before it is made has only the terminal's copy)."""
        if not self.root.is_dir():
            return None
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        rank = os.environ.get("RANK", os.environ.get("SLURM_PROCID", "0"))
        text = "".join(traceback.format_exception(type(err), err, err.__traceback__))
        with self.log.open("a", encoding="utf-8") as f:
            f.write(f"--- {stamp} rank {rank}: lhl run failed\n{text}")
        return self.log

    @property
    def wandb_run_id(self) -> Path:
        return self.root / "wandb_run_id.txt"

    def requeue_ckpt(self, index: int) -> Path:
        return self.phase_dir(index) / "requeue.ckpt"

    def last_ckpt(self, index: int) -> Path:
        return self.phase_dir(index) / "last.ckpt"

    @property
    def lock(self) -> Path:
        """Held by the one process that writes this folder (removed when it ends)."""
        return self.root / "run.lock"

    def mid_phase_checkpoints(self, index: int):
        """Every checkpoint of an unfinished phase i (requeue, periodic, Lightning's hpc, temp files)."""
        d = self.phase_dir(index)
        found = [self.requeue_ckpt(index), self.last_ckpt(index), *self.hpc_checkpoints(index), *d.glob("*.ckpt.tmp")]
        return [p for p in found if p.is_file()]

    def resume_checkpoint(self, index: int, set_aside: bool = False, report=print) -> Optional[Path]:
        """The newest readable mid-phase checkpoint of phase i to resume its fit from (None: start
        the phase). An unreadable one (truncated, corrupt) is skipped; with `set_aside` (one rank)
        it is renamed `*.corrupt` and `report`ed."""
        found = [p for p in self.mid_phase_checkpoints(index) if p.suffix == ".ckpt"]
        for path in sorted(found, key=lambda p: p.stat().st_mtime_ns, reverse=True):
            reason = unreadable(path)
            if reason is None:
                return path
            if set_aside:
                self.set_aside(path, reason, "the phase resumes from the next newest checkpoint, or from its start",
                               report)
        return None

    @staticmethod
    def set_aside(path: Path, reason: str, then: str, report=print) -> Path:
        """Rename an unreadable checkpoint to `<name>.corrupt` (kept for inspection) and say so."""
        dest = path.with_name(path.name + ".corrupt")
        os.replace(path, dest)
        report(f"lhl: {path} cannot be read ({reason}): set aside as {dest.name}; {then}")
        return dest

    def phase_ckpt_unreadable(self, index: int) -> Optional[str]:
        """Why phase i's recorded checkpoint cannot be resumed from (None: it can, or it is simply
        missing, which `load_phase` reports)."""
        path = self.phase_ckpt(index)
        if path.is_file():
            return unreadable(path)
        corrupt = path.with_name(path.name + ".corrupt")
        return f"set aside earlier as {corrupt.name}" if corrupt.is_file() else None

    # --- the phase checkpoint -------------------------------------------------------------------
    def save_phase(self, index: int, network, method_state: Dict[str, Any], global_step: int) -> Path:
        """Write phase `index`'s checkpoint atomically (temp file, fsync, rename): what the next phase
        and a resumed run start from. Call on one rank."""
        blob = {
            "format": PHASE_CKPT_FORMAT,
            "phase": int(index),
            "heads": {n: (s.kind, s.channels) for n, s in network.specs.items()},
            "architecture": getattr(network, "architecture", None),  # the backbone (model.upgrade_at)
            "network": network.state_dict(),
            "method_state": method_state,
            "global_step": int(global_step),
        }
        return atomic_torch_save(blob, self.phase_ckpt(index))

    def load_phase(self, index: int) -> Dict[str, Any]:
        """The checkpoint written by `save_phase`; errors name the file and the fix."""
        path = self.phase_ckpt(index)
        if not path.is_file():
            raise FileNotFoundError(
                f"{path}: phase {index} is recorded in {self.results_json} but its checkpoint is "
                "missing; delete the run folder (or its results.json) to start the run again"
            )
        import torch

        try:
            blob = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as err:  # noqa: BLE001 - a truncated or corrupt file, whatever torch says
            raise ValueError(f"{path}: phase {index}'s checkpoint cannot be read ({short(err)}): the file is "
                             "truncated or corrupt; fix: run the same command again in its own run folder (it "
                             "sets the file aside and runs the phase again), or delete the folder") from err
        if not isinstance(blob, dict) or blob.get("format") != PHASE_CKPT_FORMAT:
            raise ValueError(
                f"{path}: not a phase checkpoint of this lhl version (format "
                f"{blob.get('format') if isinstance(blob, dict) else '?'}, expected {PHASE_CKPT_FORMAT}); "
                "start the run in a new folder"
            )
        return blob

    def last_step(self, index: Optional[int]) -> int:
        """The global step after phase `index` (0 before the first phase)."""
        return 0 if index is None else int(self.load_phase(index)["global_step"])


def short(err: BaseException, limit: int = 160) -> str:
    text = f"{type(err).__name__}: {err}".splitlines()[0] if str(err) else type(err).__name__
    return text if len(text) <= limit else text[:limit] + "..."


def unreadable(path: Path) -> Optional[str]:
    """None when `path` opens as a torch checkpoint (its zip directory and records; the tensors are
    mapped, not read), else why not: a truncated or corrupt file."""
    import torch

    try:
        torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    except Exception as err:  # noqa: BLE001 - whatever torch raises for a damaged file
        return short(err)
    return None
