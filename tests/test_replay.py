"""ER: reservoir sampling is algorithm R (hence uniform), survives save/resume, and replays per task."""
import dataclasses
import io

import pytest
import torch
from scipy import stats
from torch import nn

from lhl.methods import METHODS
from lhl.config.resolve import options_from_dict
from lhl.data.protocol import Phase
from lhl.methods.base import Step
from lhl.methods.shared.reservoir import ReservoirBuffer
from lhl.tasks import build_task


def extra_loss(method, net, batch, phase):
    """What a method adds beside the supervised terms (the phase supervises nothing here): the sum
    of its terms (None when it adds none) and the terms by name."""
    terms, _ = method.loss_terms(Step(net, {}, None, batch, dataclasses.replace(phase, train_tasks=())))
    return (sum(terms.values()) if terms else None), terms


def make_er(tasks, **opts):
    cls = METHODS.get("er")
    return cls(options_from_dict(cls.Options, opts, "test"), tasks)


def stream(total, batch, start=0):
    """Batches of 1x1 'images' whose pixel values are the sample ids, with depth labels."""
    for lo in range(start, start + total, batch):
        ids = torch.arange(lo, min(lo + batch, start + total))
        img = ids.double().view(-1, 1, 1, 1).expand(-1, 3, 1, 1).clone()
        yield {"image": img, "depth": img[:, :1] + 1, "index": ids}


def reference_slots(seen, size, u):
    """Algorithm R, one sample at a time, on the same uniforms: the slot each sample lands in."""
    slots = []
    for k, uk in enumerate(u.tolist()):
        n = seen + k
        r = int(uk * (n + 1))
        slots.append(n if n < size else (r if r < size else -1))
    return slots


def test_reservoir_equals_sequential_algorithm_r():
    buf = ReservoirBuffer(size=7, seed=3)
    twin = torch.Generator().manual_seed(3)
    contents = [-1] * 7
    for batch in stream(120, 9):
        u = torch.rand(len(batch["index"]), generator=twin, dtype=torch.float64)
        for slot, idx in zip(reference_slots(buf.seen, 7, u), batch["index"].tolist()):
            if slot >= 0:
                contents[slot] = idx  # a later sample overwrites an earlier one in the same slot
        buf.add(batch["image"], {"depth": batch["depth"]}, batch["index"])
        assert buf.indices.tolist() == contents
    assert torch.equal(buf.images[:, 0, 0, 0].long(), buf.indices)
    assert torch.equal(buf.labels["depth"][:, 0, 0, 0].long(), buf.indices + 1)


def test_reservoir_inclusion_is_uniform():
    total, size, trials = 200, 20, 400
    counts = torch.zeros(total)
    for seed in range(trials):
        buf = ReservoirBuffer(size=size, seed=seed)
        for batch in stream(total, 10):
            buf.add(batch["image"], {"depth": batch["depth"]}, batch["index"])
        assert len(buf) == size and len(set(buf.indices.tolist())) == size
        counts[buf.indices] += 1
    expected = trials * size / total
    chi2 = ((counts - expected) ** 2 / expected).sum().item()
    assert stats.chi2.sf(chi2, df=total - 1) > 1e-3
    early, late = counts[: total // 2].sum(), counts[total // 2:].sum()
    assert abs(early - late) < 0.1 * (early + late)


def test_buffer_resume_continues_the_same_stream():
    tasks = {"depth": build_task("depth", "depth", 1)}
    whole = make_er(tasks, buffer_size=5, seed=11)
    first = make_er(tasks, buffer_size=5, seed=11)
    phase = Phase(0, ("depth",), slice=0)
    batches = list(stream(90, 6))
    for b in batches:
        whole.observe(b, phase)
    for b in batches[:7]:
        first.observe(b, phase)
    raw = io.BytesIO()
    torch.save(first.state_dict(), raw)
    raw.seek(0)
    resumed = make_er(tasks, buffer_size=5, seed=999)  # the stored generator state wins
    resumed.load_state_dict(torch.load(raw))
    for b in batches[7:]:
        resumed.observe(b, phase)
    a, b = whole.buffer, resumed.buffer
    assert a.seen == b.seen == 90
    assert torch.equal(a.indices, b.indices) and torch.equal(a.images, b.images)
    assert torch.equal(a.labels["depth"], b.labels["depth"]) and torch.equal(a.has["depth"], b.has["depth"])
    assert torch.equal(a.sample(3), b.sample(3))
    with pytest.raises(ValueError, match="buffer_size"):
        make_er(tasks, buffer_size=6).load_state_dict(whole.state_dict())


def test_samples_keep_the_labels_of_their_phase():
    tasks = {"depth": build_task("depth", "depth", 1), "seg": build_task("semantic", "seg", 3)}
    er = make_er(tasks, buffer_size=4, seed=0)
    for b in stream(4, 4):
        er.observe(b, Phase(0, ("depth",), slice=0))
    for lo in range(4, 400, 4):
        ids = torch.arange(lo, lo + 4)
        img = ids.double().view(-1, 1, 1, 1).expand(-1, 3, 1, 1).clone()
        er.observe({"image": img, "seg": (ids % 3).view(-1, 1, 1), "index": ids}, Phase(1, ("seg",), slice=1))
    buf = er.buffer
    from_seg = buf.indices >= 4
    assert from_seg.any()
    assert torch.equal(buf.has["seg"], from_seg) and torch.equal(buf.has["depth"], ~from_seg)
    assert torch.equal(buf.labels["seg"][from_seg][:, 0, 0], buf.indices[from_seg] % 3)


class Tiny(nn.Module):
    """Predictor interface: 1x1-conv backbone and heads; records each call's tasks and batch size."""

    def __init__(self, specs):
        super().__init__()
        self.backbone = nn.Conv2d(3, 2, 1)
        self.heads = nn.ModuleDict({s.name: nn.Conv2d(2, s.channels, 1) for s in specs})
        self.specs = {s.name: s for s in specs}
        self.calls = []

    def forward(self, x, tasks=None):
        names = list(self.heads) if tasks is None else list(tasks)
        self.calls.append((tuple(names), x.shape[0]))
        feat = self.backbone(x)
        return {t: self.specs[t].activate(self.heads[t](feat)) for t in names}


def replay_setup():
    torch.manual_seed(0)
    specs = [build_task("depth", "depth", 1), build_task("semantic", "seg", 3),
             build_task("normal", "nrm", 3)]
    tasks = {s.name: s for s in specs}
    net = Tiny(specs).double()
    er = make_er(tasks, buffer_size=10, seed=0, replay_batch=4, replay_weight=0.5)
    g = torch.Generator().manual_seed(1)
    img = torch.rand(4, 3, 8, 8, generator=g, dtype=torch.float64)
    er.observe({"image": img[:3], "depth": torch.rand(3, 1, 8, 8, generator=g, dtype=torch.float64),
                "index": torch.arange(3)}, Phase(0, ("depth",), slice=0))
    er.observe({"image": img[3:], "seg": torch.randint(0, 3, (1, 8, 8), generator=g),
                "index": torch.arange(3, 4)}, Phase(1, ("seg",), slice=1))
    return net, tasks, er


def test_replay_loss_groups_by_task_and_weights_by_samples():
    net, tasks, er = replay_setup()
    buf = er.buffer
    value, logs = extra_loss(er, net, {"image": torch.zeros(8, 3, 8, 8, dtype=torch.float64)},
                                Phase(2, ("nrm",), slice=2))
    assert sorted(net.calls) == [(("depth",), 3), (("seg",), 2)]  # the lone seg sample doubled
    d = tasks["depth"].loss(net(buf.images[:3], ["depth"])["depth"], buf.labels["depth"][:3])
    s = tasks["seg"].loss(net(buf.images[3:4], ["seg"])["seg"], buf.labels["seg"][3:4])
    assert torch.allclose(value, 0.5 * (3 * d + s) / 4, rtol=1e-12)
    assert set(logs) == {"er/replay"} and torch.equal(logs["er/replay"], value.detach())
    grads = torch.autograd.grad(value, [net.heads[t].weight for t in ("depth", "seg", "nrm")],
                                allow_unused=True)
    assert grads[0].abs().sum() > 0 and grads[1].abs().sum() > 0 and grads[2] is None


def test_default_replay_batch_is_the_releases_8_and_empty_buffer_adds_nothing():
    tasks = {"depth": build_task("depth", "depth", 1)}
    net = Tiny(list(tasks.values()))
    assert make_er(tasks).opts.replay_batch == 8
    er = make_er(tasks, replay_batch=None)  # None: a quarter of the batch
    big = {"image": torch.rand(12, 3, 2, 2), "depth": torch.rand(12, 1, 2, 2), "index": torch.arange(12)}
    assert extra_loss(er, net, big, Phase(0, ("depth",), slice=0)) == (None, {})
    er.observe(big, Phase(0, ("depth",), slice=0))
    value, _ = extra_loss(er, net, big, Phase(0, ("depth",), slice=0))
    assert net.calls == [(("depth",), 3)] and value.ndim == 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_replay_moves_samples_to_the_batch_device():
    net, tasks, er = replay_setup()
    net = net.cuda()
    value, _ = extra_loss(er, net, {"image": torch.zeros(8, 3, 8, 8, device="cuda")}, Phase(2, ("nrm",), slice=2))
    assert value.device.type == "cuda" and er.buffer.images.device.type == "cpu"


def test_replay_on_predictor_in_train_mode_with_a_lone_sample():
    from lhl.models import MultiHeadPredictor

    torch.manual_seed(0)
    tasks = {"seg": build_task("semantic", "seg", 4), "depth": build_task("depth", "depth", 1)}
    net = MultiHeadPredictor(backbone="resnet18", head_width=8)
    for spec in tasks.values():
        net.add_head(spec)
    net.train()
    er = make_er(tasks, buffer_size=50, replay_batch=8)
    er.observe({"image": torch.rand(1, 3, 32, 32), "seg": torch.randint(0, 4, (1, 32, 32)),
                "index": torch.arange(1)}, Phase(0, ("seg",), slice=0))
    er.observe({"image": torch.rand(3, 3, 32, 32), "depth": torch.rand(3, 1, 32, 32) + 0.5,
                "index": torch.arange(1, 4)}, Phase(1, ("depth",), slice=1))
    value, logs = extra_loss(er, net, {"image": torch.rand(2, 3, 32, 32)}, Phase(1, ("depth",), slice=1))
    value.backward()
    assert torch.isfinite(value) and net.heads["seg"].classifier.weight.grad.abs().sum() > 0


# --- DDP: one global reservoir -----------------------------------------------------------------
def _ddp_buffer_worker(rank, world, init_file, batches, out_dir):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        buf = ReservoirBuffer(size=5, seed=3)
        for b in batches:
            local = b["image"].shape[0] // world
            part = {k: v[rank * local:(rank + 1) * local] for k, v in b.items()}
            buf.add(part["image"], {"depth": part["depth"], "seg": part["seg"]}, part["index"])
        torch.save({"state": buf.state_dict(), "sample": buf.sample(2)}, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_ddp_ranks_hold_the_one_reservoir_of_the_global_batch(tmp_path):
    """Two gloo ranks, each offered its half of every global batch: both hold exactly the buffer one
    process fills from the global batches (buffer_size images in all, not per rank), so rank 0's
    checkpoint resumes every rank, and their replay draws are the two halves of the one draw."""
    import torch.multiprocessing as mp

    batches = []
    for b in stream(60, 8):  # contested slots within a batch and rows kept on both ranks
        b["seg"] = (b["index"] % 3).view(-1, 1, 1)
        batches.append(b)
    single = ReservoirBuffer(size=5, seed=3)
    for b in batches:
        single.add(b["image"], {"depth": b["depth"], "seg": b["seg"]}, b["index"])
    mp.spawn(_ddp_buffer_worker, args=(2, str(tmp_path / "init"), batches, str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    expected = single.state_dict()
    for got in ranks:
        state = got["state"]
        assert state["seen"] == expected["seen"] == 60
        assert torch.equal(state["generator"], expected["generator"])
        for key in ("images", "indices"):
            assert torch.equal(state[key], expected[key]), key
        for key in ("labels", "has"):
            assert all(torch.equal(state[key][t], expected[key][t]) for t in ("depth", "seg")), key
    assert torch.equal(torch.cat([ranks[0]["sample"], ranks[1]["sample"]]), single.sample(4))


def test_ddp_replay_draw_wraps_round_a_small_buffer(monkeypatch):
    """Fewer stored samples than world x count: every rank still replays `count`, as distinct as
    the buffer allows (rank 1 continues the permutation where rank 0 stopped, then wraps)."""
    buf = ReservoirBuffer(size=3, seed=0)
    b = next(stream(3, 3))
    buf.add(b["image"], {"depth": b["depth"]}, b["index"])
    state = buf.generator.get_state()
    draws = []
    for rank in (0, 1):
        buf.generator.set_state(state)
        monkeypatch.setattr("lhl.methods.shared.reservoir.rank_and_world", lambda rank=rank: (rank, 2))
        draws.append(buf.sample(2))
    twin = torch.Generator().set_state(state)
    perm = torch.randperm(3, generator=twin)
    assert torch.equal(draws[0], perm[[0, 1]]) and torch.equal(draws[1], perm[[2, 0]])
