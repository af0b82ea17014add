"""`lhl compare ... slurm=true` and `lhl tune ... slurm=true`: one sbatch job array (task i = one `lhl run` of the comparison) and
an aggregation job that starts after the whole array (`--dependency=afterany:<array id>`) and runs
the aggregate-only command, so nothing trains on the login node and unfinished runs are named.

Each task's script is `lhl slurm`'s own (`lhl.tools.slurm.prepare`: same checks, directives and
requeue handling), written as `<compare folder>/slurm/task_<i>.sbatch`; the array script carries
task 0's #SBATCH directives plus `--array` and runs `task_$SLURM_ARRAY_TASK_ID.sbatch`.
"""
from __future__ import annotations

import dataclasses
import os
import shlex
import shutil
import sys
from pathlib import Path
from typing import Dict, List, Optional

from lhl.core.io import atomic_write_text
from lhl.runs.identity import run_folder_of
from lhl.tools import slurm

#: `lhl slurm` job keys compare passes to every task (out= and job_name= are set per task)
JOB_KEYS = {f.name for f in dataclasses.fields(slurm.SlurmJob)} - {"out", "job_name"}

AGGREGATE = """#!/bin/bash
# lhl: the aggregation after the job array (aggregate-only: never trains)
#SBATCH --job-name=$job_name
#SBATCH --nodes=1
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=2
#SBATCH --time=01:00:00
$optional_directives
#SBATCH --output=$logdir/%x-%j.out

set -euo pipefail
$activate
cd $workdir
$python -m lhl $command_args
"""


def array_script(task0: str, name: str, n: int, folder: Path) -> str:
    """The job array: task 0's #SBATCH directives (its name and log renamed) plus --array."""
    directives = []
    for line in task0.splitlines():
        if line.startswith("#SBATCH --job-name="):
            line = f"#SBATCH --job-name={name}"
        elif line.startswith("#SBATCH --output="):
            line = f"#SBATCH --output={folder}/%x-%A_%a.out"
        if line.startswith("#SBATCH"):
            directives.append(line)
    return "\n".join([
        "#!/bin/bash", f"# lhl compare: {n} runs, task i runs task_<i>.sbatch (one lhl run each)",
        *directives, f"#SBATCH --array=0-{n - 1}", "", "set -euo pipefail",
        f'exec bash {shlex.quote(str(folder))}/task_"$SLURM_ARRAY_TASK_ID".sbatch', "",
    ])


def aggregate_script(job: slurm.SlurmJob, name: str, folder: Path, command_args: List[str],
                     array_id: Optional[str] = None) -> str:
    """The job after the array: `lhl <command_args> aggregate=true` (never trains)."""
    optional = [f"#SBATCH --{k}={getattr(job, k)}" for k in ("partition", "account") if getattr(job, k)]
    if array_id:
        optional.append(f"#SBATCH --dependency=afterany:{array_id}")
    return slurm.render(AGGREGATE, {
        "job_name": f"{name}-aggregate", "optional_directives": "\n".join(optional), "logdir": str(folder),
        "activate": slurm._activate_line(), "workdir": shlex.quote(os.getcwd()),
        "python": shlex.quote(sys.executable),
        "command_args": " ".join(shlex.quote(a) for a in [*command_args, "aggregate=true"]),
    }, source="lhl aggregation job")


def write_array(configs, folder: Path, name: str, job_args: List[str], aggregate_argv: List[str]) -> int:
    """Write one task script per (label, args, cfg) of `configs`, the array script and the
    aggregation job (`lhl <aggregate_argv> aggregate=true`) into `folder`; submit them when sbatch is
    there (`submit=` among `job_args`: yes | no | auto)."""
    folder = Path(folder).resolve()
    job_keys = [a for a in job_args if not a.startswith("submit=")]
    job, _, _ = slurm.split_args(job_keys)
    submit = next((a.split("=", 1)[1] for a in job_args if a.startswith("submit=")), "auto")
    texts = {}
    for i, (_, args, _) in enumerate(configs):
        _, script, text = slurm.prepare([*args, *job_keys, f"job_name={name}-{i}", f"out={folder}/task_{i}.sbatch"])
        texts[script] = text
    array = folder / "array.sbatch"
    texts[array] = array_script(next(iter(texts.values())), name, len(configs), folder)
    agg = folder / "aggregate.sbatch"
    texts[agg] = aggregate_script(job, name, folder, aggregate_argv)
    for path, text in texts.items():
        atomic_write_text(path, text)
        path.chmod(0o755)
    if submit == "yes" or (submit == "auto" and shutil.which("sbatch")):
        array_id = slurm.submit(array).split()[-1]
        atomic_write_text(agg, aggregate_script(job, name, folder, aggregate_argv, array_id))
        print(f"job array {array_id}: {len(configs)} runs; " + slurm.submit(agg) + f" (after {array_id})")
    else:
        print(f"wrote {len(configs)} task scripts, {array} and {agg}\nsubmit with: "
              f"id=$(sbatch --parsable {shlex.quote(str(array))}) && sbatch --dependency=afterany:$id "
              f"{shlex.quote(str(agg))}")
    return 0
