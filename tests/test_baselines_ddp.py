"""DER++, SGP and iCaRL's herding under DDP (two gloo processes on CPU, a few seconds): every rank
ends with the state one process reaches on the global batches."""
from __future__ import annotations

import pytest
import torch

from lhl.data.protocol import Phase
from lhl.methods.base import Step
from lhl.methods.shared.herding import herding_order, pooled_features
from test_baselines import Net, batch, make, specs

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed unavailable")

PHASES = [Phase(0, ("seg",), slice=0), Phase(1, ("depth",), ("seg",), slice=1)]


def global_batches():
    """Four global batches of 8: two of the first phase's task, two of the second's."""
    return [(PHASES[i // 2], batch(10 + i, n=8, task=PHASES[i // 2].train_tasks[0])) for i in range(4)]


def shard(b, rank, world):
    n = b["image"].shape[0] // world
    return {k: v[rank * n:(rank + 1) * n] for k, v in b.items()}


def derpp_state(rank=0, world=1):
    torch.manual_seed(0)
    tasks = specs()
    net = Net(tasks.values()).eval()  # per-sample outputs, whatever the batch they are computed in
    der = make("derpp", tasks, buffer_size=6, seed=3, replay_batch=2)
    seen = []
    for phase, b in global_batches():
        local = shard(b, rank, world)
        terms, _ = der.loss_terms(Step(net, net(local["image"], list(phase.train_tasks)), None, local, phase))
        seen.append(sorted(terms))
        der.observe(local, phase)
    return der.buffer.state_dict(), seen


def sgp_state(rank=0, world=1):
    torch.manual_seed(0)
    tasks = specs()
    net = Net(tasks.values()).double()
    sgp = make("sgp", tasks, batches=None)
    for phase, b in global_batches()[::2]:
        local = {k: (v.double() if v.is_floating_point() else v) for k, v in shard(b, rank, world).items()}
        sgp.on_phase_end(phase, net, [local, local])
    return sgp.state_dict()


def herding(rank=0, world=1):
    torch.manual_seed(0)
    net = Net(specs().values())
    loader = [shard(b, rank, world) for _, b in global_batches()]
    features, indices = pooled_features(net, loader)
    return indices[herding_order(features, 5)]


def _worker(rank, world, init_file, out_dir):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        torch.save({"derpp": derpp_state(rank, world), "sgp": sgp_state(rank, world), "herding": herding(rank, world)},
                   f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_derpp_sgp_and_herding_under_ddp_equal_one_process_on_the_global_batch(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    (buf, seen), sgp, chosen = derpp_state(), sgp_state(), herding()
    for rank in (0, 1):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=False)
        b, s = got["derpp"]
        assert b["seen"] == buf["seen"] == 32 and torch.equal(b["indices"], buf["indices"])
        assert torch.equal(b["images"], buf["images"])
        for k in buf["extras"]:  # fp16 outputs gathered across ranks land in the same slots
            assert torch.equal(b["has_extra"][k], buf["has_extra"][k])
            assert torch.allclose(b["extras"][k].float(), buf["extras"][k].float(), atol=2e-3), k
        for t in buf["labels"]:
            assert torch.equal(b["labels"][t], buf["labels"][t]) and torch.equal(b["has"][t], buf["has"][t])
        assert s == seen and s[-1] == ["depth", "der/depth", "der/seg", "derpp/replay"]
        assert got["sgp"]["phases_done"] == 2
        for n, basis in sgp["bases"].items():  # covariances all-reduced: the same bases everywhere
            mine, lam = got["sgp"]["bases"][n], got["sgp"]["importance"][n]
            assert mine.shape == basis.shape and torch.allclose(lam, sgp["importance"][n], atol=1e-5)
            assert torch.allclose(mine @ torch.diag(lam) @ mine.T,
                                  basis @ torch.diag(sgp["importance"][n]) @ basis.T, atol=1e-5)
        assert torch.equal(got["herding"], chosen)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["derpp", "sgp"])
def test_derpp_and_sgp_runs_under_two_process_ddp(tmp_path, synth_cache, method):
    """`python -m lhl run` on 2 gloo processes: both phases complete, the method state is in the
    phase checkpoint (written once), and it is the state the single-process run reaches."""
    import os
    import subprocess
    import sys

    from conftest import tiny_overrides
    from lhl.config import load_config
    from lhl.runs.folder import RunFolder
    from lhl.engine.runner import run

    common = {"sequence.tasks": "[semantic,depth]", "method": method, "train.max_steps": 2, "data.shuffle": "false",
              "eval.gallery_samples": 0, "model.backbone": "test_resnet", "model.output_stride": 32}
    single = run(load_config([], tiny_overrides(tmp_path / "single", synth_cache, **common, **{"data.batch_size": 8})))
    args = tiny_overrides(tmp_path / "ddp", synth_cache, **common, **{
        "data.batch_size": 4, "train.devices": 2, "train.strategy": "ddp"})
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    env.pop("LOCAL_RANK", None)
    proc = subprocess.run([sys.executable, "-m", "lhl", "run", *args], cwd=os.getcwd(), env=env,
                          capture_output=True, text=True, timeout=540)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "MEMBER: 2/2" in proc.stdout + proc.stderr
    run_dir = next((tmp_path / "ddp" / "runs").rglob("results.json")).parent
    assert sorted(p.name for p in run_dir.glob("phase_*/*.ckpt*")) == ["phase.ckpt", "phase.ckpt"]
    ddp_state, one_state = (RunFolder(d).load_phase(1)["method_state"] for d in (run_dir, single))
    if method == "derpp":  # one global reservoir (rank-interleaved order): the same samples and outputs
        a, b = ddp_state["buffer"], one_state["buffer"]
        assert a["seen"] == b["seen"] > 0 and sorted(a["indices"].tolist()) == sorted(b["indices"].tolist())
        assert set(a["extras"]) == {"der/semantic", "der/depth"}
        assert all(int(a["has_extra"][k].sum()) == int(b["has_extra"][k].sum()) > 0 for k in a["extras"])
    else:  # covariances all-reduced over the ranks' halves: as many bases as one process keeps
        assert ddp_state["phases_done"] == 2 and set(ddp_state["bases"]) == set(one_state["bases"])
