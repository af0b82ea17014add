"""`lhl slurm`: write an sbatch script for one `lhl run`, and submit it when `sbatch` is there.

    lhl slurm seq=nyu_s1 method=had seed=0 gpus=4 nodes=2 time=12:00:00 partition=gpu train.epochs=30

The keys in `SlurmJob` (gpus, nodes, time, partition, account, cpus_per_task, mem, job_name, out,
template, submit) belong to the job; every other argument (seq=, method=, seed=, dotted overrides,
YAML files) goes to the `lhl run` command line inside the script. Those are composed with
`lhl.config.load_config` here, before anything is written, so a typo fails now and not hours later
in the queue. The script is `experiments/slurm/<template>.sbatch` rendered with `string.Template`;
its directives follow docs/contributing/design-notes.md: `--ntasks-per-node` equals the GPUs per node (one
process per GPU, launched by `srun`), and `--signal=SIGUSR1@90 --requeue` lets lhl save a
requeue checkpoint and requeue at the time limit, after which the runner skips completed phases
and resumes the running one. `srun` gets `--cpus-per-task` (recent Slurm does not pass it on) and
`--kill-on-bad-exit=1`; job and script are named after the method preset (`run.method_tag`).

Note that `out=` here is the script path, not `run.out_dir` as in `lhl run` (pass
`run.out_dir=DIR` for that); `gpus=` and `nodes=` set both the allocation and
`train.devices` / `train.num_nodes`.
"""
from __future__ import annotations

import dataclasses
import os
import re
import shlex
import shutil
import string
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from lhl.config import ConfigError, experiments_dir, load_config, method_tag
from lhl.core.io import atomic_write_text

USAGE = """usage: lhl slurm [CONFIG.yaml ...] [key=value ...]

job keys: gpus=N (per node, default 1)  nodes=N (1)  time=HH:MM:SS (24:00:00)  partition=P
          account=A  cpus_per_task=N (8)  mem=64G  job_name=NAME (lhl-<seq>-<method preset>-s<seed>)
          out=SCRIPT (<run.out_dir>/slurm/<job_name>.sbatch)  template=NAME (experiments/slurm/)
          submit=auto|yes|no (auto: submit when sbatch is on PATH)
anything else (seq=, method=, seed=, train.epochs=3, ...) is passed to `lhl run`.
"""

#: `lhl run` keys the job sets itself from gpus= / nodes=; passing them as well would disagree.
RESERVED = {
    "train.devices": "gpus=N",
    "train.num_nodes": "nodes=N",
    "train.accelerator": "nothing (a SLURM job here runs on GPUs)",
}

_TIME = re.compile(r"^(\d+-\d+(:\d\d){0,2}|\d+(:\d\d){0,2})$")  # the forms sbatch --time accepts
_MEM = re.compile(r"^\d+[KMGT]?$")
_NAME = re.compile(r"^[A-Za-z0-9._,+-]+$")  # safe inside a #SBATCH line and a file name


@dataclass
class SlurmJob:
    """The allocation and where the script goes; field names are the command-line keys."""

    gpus: int = 1
    nodes: int = 1
    time: str = "24:00:00"
    partition: Optional[str] = None
    account: Optional[str] = None
    cpus_per_task: int = 8
    mem: Optional[str] = None
    job_name: Optional[str] = None
    out: Optional[str] = None
    template: str = "template"
    submit: str = "auto"

    def validate(self) -> None:
        """Reject values that would make a broken (or injected) #SBATCH line."""
        for key in ("gpus", "nodes", "cpus_per_task"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key}={getattr(self, key)} must be a positive integer")
        if not _TIME.match(self.time):
            raise ConfigError(
                f"time={self.time!r} is not a SLURM time; use HH:MM:SS, MM:SS, minutes, "
                "or D-HH[:MM[:SS]] (e.g. time=02:00:00)"
            )
        if self.mem is not None and not _MEM.match(self.mem):
            raise ConfigError(f"mem={self.mem!r}: use a number with K/M/G/T (e.g. mem=64G)")
        for key in ("partition", "account", "job_name", "template"):
            value = getattr(self, key)
            if value is not None and not _NAME.match(value):
                raise ConfigError(
                    f"{key}={value!r} may hold only letters, digits and . _ , + -"
                )
        if self.submit not in ("auto", "yes", "no"):
            raise ConfigError(f"submit={self.submit!r}: use auto, yes or no")


def split_args(argv: Sequence[str]) -> Tuple[SlurmJob, List[str], List[str]]:
    """(job, config files, `lhl run` overrides) from the command line."""
    fields = {f.name: f for f in dataclasses.fields(SlurmJob)}
    values: Dict[str, object] = {}
    files: List[str] = []
    overrides: List[str] = []
    for arg in argv:
        if "=" not in arg and arg.endswith((".yaml", ".yml")):
            files.append(arg)
            continue
        if "=" not in arg:
            raise ConfigError(f"'{arg}' is not key=value (e.g. gpus=4 or train.epochs=3)")
        key, value = arg.split("=", 1)
        if key in fields:
            if fields[key].type in (int, "int"):
                try:
                    values[key] = int(value)
                except ValueError:
                    raise ConfigError(f"{key}={value!r} must be an integer") from None
            else:
                values[key] = value or None
        elif key in RESERVED:
            raise ConfigError(f"do not pass {key}= to a SLURM job; set {RESERVED[key]}")
        else:
            overrides.append(arg)
    job = SlurmJob(**values)
    if job.time is None or job.template is None or job.submit is None:
        raise ConfigError("time=, template= and submit= need a value")
    job.validate()
    return job, files, overrides


def device_overrides(job: SlurmJob) -> List[str]:
    """The `lhl run` overrides that match the allocation (one process per GPU)."""
    return [f"train.devices={job.gpus}", f"train.num_nodes={job.nodes}", "train.accelerator=gpu"]


def template_path(name: str) -> Path:
    path = experiments_dir() / "slurm" / f"{name}.sbatch"
    if not path.is_file():
        have = sorted(p.stem for p in (experiments_dir() / "slurm").glob("*.sbatch"))
        raise ConfigError(
            f"template={name}: {path} does not exist; available: {', '.join(have) or 'none'}"
        )
    return path


def render(template: str, values: Dict[str, str], source: str = "template") -> str:
    """`string.Template` substitution; a line that is only a placeholder rendering empty is dropped
    (so optional directives leave no blank line in the #SBATCH block)."""
    lone = re.compile(r"^\s*\$(?:(\w+)|\{(\w+)\})\s*$")
    kept = []
    for line in template.splitlines(keepends=True):
        m = lone.match(line)
        if m and values.get(m.group(1) or m.group(2), None) == "":
            continue
        kept.append(line)
    try:
        return string.Template("".join(kept)).substitute(values)
    except KeyError as err:
        raise ConfigError(
            f"{source} uses an unknown placeholder ${err.args[0]}; "
            f"known: {', '.join(sorted(values))} (write $$ for a literal $)"
        ) from None
    except ValueError as err:
        raise ConfigError(f"{source}: {err} (write $$ for a literal $)") from None


def _activate_line() -> str:
    """Source the venv this command runs from, so the job sees the same `lhl` (empty if none)."""
    activate = Path(sys.prefix) / "bin" / "activate"
    if sys.prefix == sys.base_prefix or not activate.is_file():
        return ""
    # venv activate scripts may read unset variables; -u is restored right after
    return f"set +u; source {shlex.quote(str(activate))}; set -u"


def prepare(argv: Sequence[str]) -> Tuple[SlurmJob, Path, str]:
    """Validate everything and render the script; returns (job, script path, text). Writes nothing."""
    job, files, overrides = split_args(argv)
    run_args = [str(Path(f).resolve()) for f in files] + overrides + device_overrides(job)
    cfg = load_config(files, overrides + device_overrides(job))  # a ConfigError stops us here
    if job.job_name is None:
        raw = f"lhl-{cfg.sequence.name}-{method_tag(cfg)}-s{cfg.run.seed}"  # the preset: had_faithful != had
        job.job_name = re.sub(r"[^A-Za-z0-9._+-]", "_", raw)
    script = Path(job.out or Path(cfg.run.out_dir) / "slurm" / f"{job.job_name}.sbatch").resolve()
    optional = [
        f"#SBATCH --{key}={getattr(job, key)}"
        for key in ("partition", "account", "mem")
        if getattr(job, key) is not None
    ]
    tpl = template_path(job.template)
    text = render(
        tpl.read_text(),
        {
            "job_name": job.job_name,
            "nodes": str(job.nodes),
            "gpus": str(job.gpus),
            "cpus_per_task": str(job.cpus_per_task),
            "time": job.time,
            "optional_directives": "\n".join(optional),
            "logdir": str(script.parent),
            "activate": _activate_line(),
            "workdir": shlex.quote(os.getcwd()),
            "python": shlex.quote(sys.executable),
            "run_args": " ".join(shlex.quote(a) for a in run_args),
        },
        source=str(tpl),
    )
    if any(ch.isspace() for ch in str(script.parent)):
        raise ConfigError(
            f"the log folder {script.parent} holds whitespace, which #SBATCH --output "
            "cannot take; choose out= in a folder without spaces"
        )
    return job, script, text


def submit(script: Path) -> str:
    """`sbatch SCRIPT`; returns its output line ("Submitted batch job N")."""
    sbatch = shutil.which("sbatch")
    if sbatch is None:
        raise ConfigError("submit=yes but sbatch is not on PATH; use submit=no on this host")
    proc = subprocess.run([sbatch, str(script)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise ConfigError(
            f"sbatch {script} failed (exit {proc.returncode}): "
            f"{(proc.stderr or proc.stdout).strip()}"
        )
    return proc.stdout.strip()


def cli(argv: List[str]) -> int:
    if any(a in ("-h", "--help", "help") for a in argv):
        print(USAGE)
        return 0
    job, script, text = prepare(argv)
    atomic_write_text(script, text)
    script.chmod(0o755)
    if job.submit == "yes" or (job.submit == "auto" and shutil.which("sbatch")):
        print(submit(script))
        print(f"script: {script}\nlog: {script.parent}/{job.job_name}-<jobid>.out")
    else:
        print(f"wrote {script}\nsubmit with: sbatch {shlex.quote(str(script))}")
    return 0
