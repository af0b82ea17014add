"""CPU DDP (gloo, 2 processes) of a tiny two-phase sequence, launched as `python -m lhl run`.

Checks: ranks shard the data, metrics reduced across ranks equal a single-process evaluation of
the same weights, checkpoints and results are written once, and the results are close to the
single-process run with the same seed and the same global batch.
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from conftest import tiny_overrides
from lhl.config import load_config
from lhl.data.datamodule import LifelongDataModule
from lhl.data.protocol import Phase
from lhl.runs.results import Results
from lhl.engine.build import build_network, build_specs
from lhl.runs.identity import run_folder_of
from lhl.runs.folder import RunFolder
from lhl.engine.runner import run
from lhl.tasks import build_task

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed unavailable")


def _overrides(tmp_path, cache, method, **extra):
    return tiny_overrides(
        tmp_path, cache, **{"sequence.tasks": "[semantic,depth]", "method": method, "train.max_steps": 2,
                            "data.shuffle": "false", "eval.gallery_samples": 0, "train.lr": 1e-4, **extra}
    )


def _eval_single(cfg, run_dir, phase_index, tasks):
    """Evaluate the checkpoint of a phase in this process, on the whole val set."""
    ckpt = RunFolder(run_dir).load_phase(phase_index)
    net = build_network(cfg)
    for name, (kind, ch) in ckpt["heads"].items():
        net.add_head(build_task(kind, name, ch))
    net.load_state_dict(ckpt["network"])
    net.eval()
    dm = LifelongDataModule(cfg.data, build_specs(cfg))
    dm.set_phase(Phase(phase_index, (tasks[-1],), eval_tasks=tuple(tasks), slice=phase_index))
    metrics = {t: net.specs[t].metric() for t in tasks}
    with torch.no_grad():
        for batch in dm.val_dataloader():
            out = net(batch["image"], tasks)
            for t in tasks:
                metrics[t].update(out[t], batch[t])
    return {t: {k: float(v) for k, v in m.compute().items()} for t, m in metrics.items()}


@pytest.mark.slow
@pytest.mark.parametrize("method", ["lwf", "ewc", "er"])
def test_ddp_two_processes_matches_single_process(tmp_path, synth_cache, method):
    # make the synthetic set once, before the ranks start
    single_cfg = load_config([], _overrides(tmp_path / "single", synth_cache, method, **{"data.batch_size": 8}))
    single = Results.load(run(single_cfg))

    ddp_args = _overrides(tmp_path / "ddp", synth_cache, method, **{
        "data.batch_size": 4, "train.devices": 2, "train.strategy": "ddp",
    })
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    env.pop("LOCAL_RANK", None)
    proc = subprocess.run(
        [sys.executable, "-m", "lhl", "run", *ddp_args], cwd=os.getcwd(), env=env,
        capture_output=True, text=True, timeout=420,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    cfg = load_config([], ddp_args)
    run_dir = run_folder_of(cfg).root
    ddp = Results.load(run_dir)
    assert [p["phase"] for p in ddp.phases] == [0, 1]
    assert sorted(p.name for p in run_dir.glob("phase_*/*.ckpt*")) == ["phase.ckpt", "phase.ckpt"]
    assert "distributed_backend=gloo" in proc.stdout + proc.stderr and "MEMBER: 2/2" in proc.stdout + proc.stderr

    # metrics reduced across the two ranks == one process evaluating the same weights
    exact = _eval_single(cfg, run_dir, 1, ["semantic", "depth"])
    for t, ms in exact.items():
        for k, v in ms.items():
            assert ddp.phases[1]["metrics"][t][k] == pytest.approx(v, rel=1e-5, abs=1e-6), (t, k)

    if method == "er":  # one reservoir over the global batches, the same size as one process's
        def buffer(d):
            return RunFolder(d).load_phase(1)["method_state"]["buffer"]
        b_ddp, b_single = buffer(run_dir), buffer(run_folder_of(single_cfg).root)
        assert b_ddp["seen"] == b_single["seen"] > 0 and b_ddp["images"].shape == b_single["images"].shape

    # training under DDP (2 x 4 images) follows the single-process run (8 images); BatchNorm
    # statistics are per rank (SyncBatchNorm needs GPUs), hence a tolerance
    for t, ms in single.phases[1]["metrics"].items():
        for k, v in ms.items():
            assert ddp.phases[1]["metrics"][t][k] == pytest.approx(v, rel=0.05, abs=0.02), (t, k)
