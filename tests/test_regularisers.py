"""EWC, SI and MAS: importances against hand-computed values, penalties, state and hygiene."""
import dataclasses
import copy
import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lhl.methods import METHODS
from lhl.methods.shared.quadratic import quadratic_penalty, regularised_parameters
from lhl.config.resolve import options_from_dict
from lhl.data.protocol import Phase
from lhl.methods.base import Step
from lhl.models import MultiHeadPredictor
from lhl.tasks import build_task


def extra_loss(method, net, batch, phase):
    """What a method adds beside the supervised terms (the phase supervises nothing here): the sum
    of its terms (None when it adds none) and the terms by name."""
    terms, _ = method.loss_terms(Step(net, {}, None, batch, dataclasses.replace(phase, train_tasks=())))
    return (sum(terms.values()) if terms else None), terms


class Tiny(nn.Module):
    """The predictor's interface on a 1x1-conv backbone (3 -> 1 channel) and 1x1-conv heads."""

    def __init__(self, specs):
        super().__init__()
        self.backbone = nn.Conv2d(3, 1, 1, bias=False)
        self.heads = nn.ModuleDict()
        self.specs = {}
        for spec in specs:
            self.specs[spec.name] = spec
            self.heads[spec.name] = nn.Conv2d(1, spec.channels, 1, bias=spec.kind == "semantic")

    def forward(self, x, tasks=None):
        feat = self.backbone(x)
        names = list(self.heads) if tasks is None else list(tasks)
        return {t: self.specs[t].activate(self.heads[t](feat)) for t in names}


def tiny(seed=0):
    torch.manual_seed(seed)
    specs = [build_task("depth", "depth", 1), build_task("semantic", "seg", 3)]
    net = Tiny(specs).double()
    return net, {s.name: s for s in specs}


def depth_batches(seed=1, n=2):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        x = torch.rand(2, 3, 4, 4, generator=g, dtype=torch.float64)
        y = torch.rand(2, 1, 4, 4, generator=g, dtype=torch.float64) * 2
        y[0, 0, :2, :] = 0  # invalid pixels
        out.append({"image": x, "depth": y, "index": torch.arange(2)})
    return out


def seg_batches(seed=2, n=2):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        x = torch.rand(2, 3, 4, 4, generator=g, dtype=torch.float64)
        y = torch.randint(0, 3, (2, 4, 4), generator=g)
        y[1, 0, :] = -1  # ignored pixels
        out.append({"image": x, "seg": y, "index": torch.arange(2)})
    return out


def make(name, tasks, **opts):
    cls = METHODS.get(name)
    return cls(options_from_dict(cls.Options, opts, "test"), tasks)


def weights(net):
    w = net.backbone.weight.detach().numpy().reshape(3)
    return w, {t: net.heads[t] for t in net.heads}


# --- hand-computed gradients of the tiny model (numpy, float64) ---------------------------------
def depth_grads(net, batch):
    """dL/dw (3) and dL/db (1) of the mean L1 over valid pixels, L = mean |b (w·x) - y|."""
    w = net.backbone.weight.detach().numpy().reshape(3)
    b = net.heads["depth"].weight.item()
    x = batch["image"].numpy()
    y = batch["depth"].numpy()[:, 0]
    f = np.einsum("c,bchw->bhw", w, x)
    valid = y != 0
    s = np.sign(b * f - y) * valid
    n = valid.sum()
    return np.einsum("bhw,bchw->c", s * b, x) / n, np.array([(s * f).sum() / n])


def seg_grads(net, batch):
    """dL/dw, dL/da, dL/dc of the mean NLL over valid pixels for z_k = a_k f + c_k."""
    w = net.backbone.weight.detach().numpy().reshape(3)
    a = net.heads["seg"].weight.detach().numpy().reshape(3)
    c = net.heads["seg"].bias.detach().numpy()
    x = batch["image"].numpy()
    y = batch["seg"].numpy()
    f = np.einsum("c,bchw->bhw", w, x)
    z = a[:, None, None, None] * f[None] + c[:, None, None, None]  # [K,B,H,W]
    p = np.exp(z - z.max(0)) / np.exp(z - z.max(0)).sum(0)
    valid = y >= 0
    onehot = np.stack([(y == k) for k in range(3)]).astype(float)
    d = (p - onehot) * valid  # dL/dz times n
    n = valid.sum()
    dw = np.einsum("kbhw,k,bchw->c", d, a, x) / n
    da = np.einsum("kbhw,bhw->k", d, f) / n
    dc = d.sum(axis=(1, 2, 3)) / n
    return dw, da, dc


# --- EWC ------------------------------------------------------------------------------------------
def test_ewc_fisher_depth_matches_hand_computed():
    net, tasks = tiny()
    ewc = make("ewc", tasks)
    batches = depth_batches()
    fisher = ewc.fisher(Phase(0, ("depth",), slice=0), net, batches)
    gw = [depth_grads(net, b)[0] for b in batches]
    gb = [depth_grads(net, b)[1] for b in batches]
    assert set(fisher) == {"backbone.weight", "heads.depth.weight"}
    np.testing.assert_allclose(fisher["backbone.weight"].reshape(3).numpy(),
                               np.mean([g ** 2 for g in gw], 0), rtol=1e-10)
    np.testing.assert_allclose(fisher["heads.depth.weight"].reshape(1).numpy(),
                               np.mean([g ** 2 for g in gb], 0), rtol=1e-10)


def test_ewc_fisher_semantic_matches_hand_computed_and_respects_fisher_batches():
    net, tasks = tiny()
    batches = seg_batches(n=3)
    fisher = make("ewc", tasks, fisher_batches=2).fisher(Phase(0, ("seg",), slice=0), net, batches)
    grads = [seg_grads(net, b) for b in batches[:2]]
    assert set(fisher) == {"backbone.weight", "heads.seg.weight", "heads.seg.bias"}
    for key, i in (("backbone.weight", 0), ("heads.seg.weight", 1), ("heads.seg.bias", 2)):
        expected = np.mean([g[i] ** 2 for g in grads], 0)
        np.testing.assert_allclose(fisher[key].reshape(-1).numpy(), expected, rtol=1e-10)


def test_ewc_penalty_zero_at_anchor_hand_value_and_quadratic_growth():
    net, tasks = tiny()
    ewc = make("ewc", tasks, lambda_=10.0)
    phase = Phase(0, ("depth",), slice=0)
    ewc.on_phase_end(phase, net, depth_batches())
    fisher = ewc.terms[0]["importance"]
    value, logs = extra_loss(ewc, net, {}, Phase(1, ("seg",), slice=1))
    assert value.item() == 0.0 and set(logs) == {"ewc"}
    with torch.no_grad():
        net.backbone.weight.add_(0.1)
    one = extra_loss(ewc, net, {}, phase)[0]
    expected = 0.5 * 10.0 * (fisher["backbone.weight"] * 0.01).sum()
    assert torch.allclose(one, expected, rtol=1e-12) and one > 0
    with torch.no_grad():
        net.backbone.weight.add_(0.1)
    two = extra_loss(ewc, net, {}, phase)[0]
    assert torch.allclose(two, 4 * one, rtol=1e-10)


@pytest.mark.parametrize("name", ["ewc", "si", "mas"])
def test_old_heads_are_left_alone_unless_anchor_heads(name):
    """By default only the backbone is anchored: an old head gets no gradient from the penalty (so the
    optimiser, weight decay included, skips it and it stays exactly as learned)."""
    net, tasks = tiny()
    method = make(name, tasks)
    phase = Phase(0, ("depth",), slice=0)
    method.on_phase_start(phase, net)
    if name == "si":
        for p in net.parameters():
            p.grad = torch.ones_like(p)
        with torch.no_grad():
            for p in net.parameters():
                p.sub_(0.1)
        method.after_optimizer_step(net)
    method.on_phase_end(phase, net, depth_batches())
    assert method.terms and all(n.startswith("backbone.") for n in method.terms[0]["importance"])
    with torch.no_grad():
        net.heads["depth"].weight.add_(0.5)
    assert extra_loss(method, net, {}, Phase(1, ("seg",), slice=1))[0].item() == 0.0
    with torch.no_grad():
        net.backbone.weight.add_(0.5)
    value = extra_loss(method, net, {}, Phase(1, ("seg",), slice=1))[0]
    grads = torch.autograd.grad(value, [net.heads["depth"].weight, net.backbone.weight], allow_unused=True)
    assert value > 0 and grads[0] is None and grads[1].abs().sum() > 0


def test_current_head_is_free_and_old_head_is_anchored_with_anchor_heads():
    net, tasks = tiny()
    ewc = make("ewc", tasks, anchor_heads=True)
    ewc.on_phase_end(Phase(0, ("depth",), slice=0), net, depth_batches())
    with torch.no_grad():
        net.heads["seg"].weight.add_(5.0)
    assert extra_loss(ewc, net, {}, Phase(1, ("seg",), slice=1))[0].item() == 0.0
    with torch.no_grad():
        net.heads["depth"].weight.add_(0.5)
    value = extra_loss(ewc, net, {}, Phase(1, ("seg",), slice=1))[0]
    assert value > 0
    grads = torch.autograd.grad(value, [net.heads["seg"].weight, net.heads["depth"].weight],
                                allow_unused=True)
    assert grads[0] is None and grads[1].abs().sum() > 0


@pytest.mark.parametrize("online", [False, True])
def test_ewc_accumulates_across_phases(online):
    net, tasks = tiny()
    ewc = make("ewc", tasks, online=online, gamma=0.5, lambda_=2.0)
    ewc.on_phase_end(Phase(0, ("depth",), slice=0), net, depth_batches())
    f1 = {n: t.clone() for n, t in ewc.terms[0]["importance"].items()}
    theta1 = net.backbone.weight.detach().clone()
    with torch.no_grad():
        net.backbone.weight.add_(0.2)
    f2 = ewc.fisher(Phase(1, ("seg",), slice=1), net, seg_batches())
    ewc.on_phase_end(Phase(1, ("seg",), slice=1), net, seg_batches())
    with torch.no_grad():
        net.backbone.weight.add_(0.3)
    theta = net.backbone.weight.detach()
    theta2 = theta - 0.3
    value = extra_loss(ewc, net, {}, Phase(2, ("x",), slice=2))[0]
    bb = "backbone.weight"
    if online:
        assert len(ewc.terms) == 1
        expected = ((0.5 * f1[bb] + f2[bb]) * (theta - theta2) ** 2).sum()
    else:
        assert len(ewc.terms) == 2
        expected = (f1[bb] * (theta - theta1) ** 2).sum() + (f2[bb] * (theta - theta2) ** 2).sum()
    assert torch.allclose(value, 0.5 * 2.0 * expected, rtol=1e-10)


# --- MAS ------------------------------------------------------------------------------------------
def test_mas_importance_matches_hand_computed_label_free():
    net, tasks = tiny()
    batches = [{"image": b["image"]} for b in depth_batches()]  # no labels needed
    omega = make("mas", tasks).importance(Phase(0, ("depth",), slice=0), net, batches)
    w = net.backbone.weight.detach().numpy().reshape(3)
    b = net.heads["depth"].weight.item()
    gw, gb = [], []
    for batch in batches:
        x = batch["image"].numpy()
        f = np.einsum("c,bchw->bhw", w, x)
        o = b * f
        gw.append(np.abs(np.einsum("bhw,bchw->c", 2 * o * b, x) / o.size))
        gb.append(np.abs((2 * o * f).sum() / o.size))
    np.testing.assert_allclose(omega["backbone.weight"].reshape(3).numpy(), np.mean(gw, 0), rtol=1e-10)
    np.testing.assert_allclose(omega["heads.depth.weight"].item(), np.mean(gb), rtol=1e-10)


def test_mas_accumulates_and_penalises():
    net, tasks = tiny()
    mas = make("mas", tasks, lambda_=3.0)
    mas.on_phase_end(Phase(0, ("depth",), slice=0), net, depth_batches())
    o1 = mas.terms[0]["importance"]["backbone.weight"].clone()
    o2 = mas.importance(Phase(1, ("seg",), slice=1), net, seg_batches())["backbone.weight"]
    mas.on_phase_end(Phase(1, ("seg",), slice=1), net, seg_batches())
    assert torch.allclose(mas.terms[0]["importance"]["backbone.weight"], o1 + o2)
    assert extra_loss(mas, net, {}, Phase(2, ("x",), slice=2))[0].item() == 0.0
    with torch.no_grad():
        net.backbone.weight.sub_(0.1)
    value, logs = extra_loss(mas, net, {}, Phase(2, ("x",), slice=2))
    assert torch.allclose(value, 3.0 * ((o1 + o2) * 0.01).sum()) and "mas" in logs


# --- SI -------------------------------------------------------------------------------------------
def test_si_path_integral_matches_hand_computed():
    net, tasks = tiny()
    si = make("si", tasks, c=2.0, xi=0.1)
    si.on_phase_start(Phase(0, ("depth",), slice=0), net)
    w = net.backbone.weight
    theta0 = w.detach().clone()
    g1, d1 = torch.tensor([1.0, -2.0, 0.5]), torch.tensor([-0.1, 0.2, 0.3])
    g2, d2 = torch.tensor([0.5, -1.0, 0.5]), torch.tensor([-0.1, 0.1, 0.1])
    for g, d in ((g1, d1), (g2, d2)):
        w.grad = g.double().view_as(w)
        with torch.no_grad():
            w.add_(d.double().view_as(w))
        si.after_optimizer_step(net)
    si.on_phase_end(Phase(0, ("depth",), slice=0), net, None)
    omega = -(g1 * d1 + g2 * d2)  # [0.15, 0.5, -0.2]
    expected = omega.clamp_min(0) / ((d1 + d2) ** 2 + 0.1)
    got = si.terms[0]["importance"]["backbone.weight"].reshape(3).float()
    assert torch.allclose(got, expected.float(), rtol=1e-6)
    assert torch.allclose(si.terms[0]["anchor"]["backbone.weight"], theta0 + (d1 + d2).double().view_as(w))
    assert extra_loss(si, net, {}, Phase(1, ("seg",), slice=1))[0].item() == 0.0
    with torch.no_grad():
        w.add_(0.1)
    value, logs = extra_loss(si, net, {}, Phase(1, ("seg",), slice=1))
    assert torch.allclose(value.float(), 2.0 * (expected * 0.01).sum().float()) and "si" in logs


def test_si_omega_sums_to_loss_decrease_under_small_step_gradient_descent():
    net, tasks = tiny()
    si = make("si", tasks)
    si.on_phase_start(Phase(0, ("depth",), slice=0), net)
    batch = depth_batches(n=1)[0]
    opt = torch.optim.SGD(net.parameters(), lr=2e-3)

    def loss():
        return tasks["depth"].loss(net(batch["image"], ["depth"])["depth"], batch["depth"])

    start = loss().item()
    for _ in range(20):
        opt.zero_grad()
        loss().backward()
        opt.step()
        si.after_optimizer_step(net)
    decrease = start - loss().item()
    total = sum(o.sum() for o in si.omega.values()).item()
    assert decrease > 0 and abs(total - decrease) < 0.05 * decrease


def test_si_mid_phase_state_survives_a_requeue_restore():
    """A SLURM requeue restores the method's state, then fit starts again (on_phase_start): the
    path integral of the steps before the requeue must not be wiped."""
    net, tasks = tiny()
    si = make("si", tasks)
    phase = Phase(0, ("depth",), slice=0)
    si.on_phase_start(phase, net)
    w = net.backbone.weight
    w.grad = torch.ones_like(w)
    with torch.no_grad():
        w.sub_(0.1)
    si.after_optimizer_step(net)
    raw = io.BytesIO()
    torch.save(si.state_dict(), raw)
    raw.seek(0)
    restored = make("si", tasks)
    restored.load_state_dict(torch.load(raw))
    restored.on_phase_start(phase, net)
    assert torch.allclose(restored.omega["backbone.weight"], torch.full_like(w, 0.1))
    assert torch.allclose(restored.start["backbone.weight"], w.detach() + 0.1)
    si.on_phase_end(phase, net, None)
    si.on_phase_start(Phase(1, ("seg",), slice=1), net)  # after a finished phase: a new integral
    assert all(float(o.abs().sum()) == 0.0 for o in si.omega.values())


def test_si_ignores_a_step_skipped_by_the_fp16_grad_scaler():
    net, tasks = tiny()
    si = make("si", tasks)
    si.on_phase_start(Phase(0, ("depth",), slice=0), net)
    w = net.backbone.weight
    w.grad = torch.full_like(w, float("inf"))  # the scaler found inf and skipped the step
    si.after_optimizer_step(net)
    w.grad = torch.full_like(w, 2.0)
    with torch.no_grad():
        w.sub_(0.1)
    si.after_optimizer_step(net)
    assert torch.allclose(si.omega["backbone.weight"], torch.full_like(w, 0.2))


def _fisher_worker(rank, world, init_file, batch, out_file):
    import torch.distributed as dist

    from lhl.methods.shared.quadratic import gradient_statistic

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        net, tasks = tiny()
        ewc = make("ewc", tasks)
        local = [{k: v[rank::world] for k, v in b.items()} for b in batch]
        fisher = ewc.fisher(Phase(0, ("depth",), slice=0), net, local)
        if rank == 0:
            torch.save(fisher, out_file)
    finally:
        dist.destroy_process_group()


def test_ewc_fisher_under_ddp_equals_the_single_process_fisher_of_the_global_batch(tmp_path):
    """Two gloo ranks, each with half of every batch: the Fisher is the one of the global batch,
    not a mean of per-rank squared gradients (which would scale it with the number of ranks)."""
    import torch.multiprocessing as mp

    batches = depth_batches(n=2)
    for b in batches:  # no invalid pixels, so a local mean is exactly half of the global mean
        b["depth"] = b["depth"] + 0.5
    net, tasks = tiny()
    expected = make("ewc", tasks).fisher(Phase(0, ("depth",), slice=0), net, batches)
    out = tmp_path / "fisher.pt"
    mp.spawn(_fisher_worker, args=(2, str(tmp_path / "init"), batches, str(out)), nprocs=2, join=True)
    got = torch.load(out)
    for name, value in expected.items():
        assert torch.allclose(got[name], value, rtol=1e-9, atol=1e-12), name


# --- shared -------------------------------------------------------------------------------------
def test_quadratic_penalty_and_parameter_selection():
    net, tasks = tiny()
    names = set(regularised_parameters(net, ["depth"]))
    assert names == {"backbone.weight", "heads.depth.weight"}
    net.backbone.weight.requires_grad_(False)
    assert set(regularised_parameters(net, ["depth"])) == {"heads.depth.weight"}
    p = {"a": torch.tensor([1.0, 2.0])}
    value = quadratic_penalty(p, {"a": torch.tensor([3.0, 0.5])}, {"a": torch.tensor([0.0, 4.0])})
    assert value.item() == pytest.approx(3 * 1 + 0.5 * 4)


@pytest.mark.parametrize("name", ["ewc", "mas", "si"])
def test_state_dict_round_trip_through_torch_save(name):
    net, tasks = tiny()
    method = make(name, tasks)
    phase = Phase(0, ("depth",), slice=0)
    method.on_phase_start(phase, net)
    if name == "si":
        net.backbone.weight.grad = torch.ones_like(net.backbone.weight)
        with torch.no_grad():
            net.backbone.weight.sub_(0.1)
        method.after_optimizer_step(net)
    method.on_phase_end(phase, net, depth_batches())
    with torch.no_grad():
        net.backbone.weight.add_(0.3)
    raw = io.BytesIO()
    torch.save(method.state_dict(), raw)
    raw.seek(0)
    restored = make(name, tasks)
    restored.load_state_dict(torch.load(raw))
    a = extra_loss(method, net, {}, Phase(1, ("seg",), slice=1))[0]
    b = extra_loss(restored, net, {}, Phase(1, ("seg",), slice=1))[0]
    assert a > 0 and torch.equal(a, b)


@pytest.fixture(scope="module")
def predictor():
    torch.manual_seed(0)
    return MultiHeadPredictor(backbone="resnet18", head_width=8)


@pytest.mark.parametrize("kind,channels", [("semantic", 4), ("depth", 1), ("normal", 3)])
def test_estimation_on_predictor_every_task_type_leaves_network_as_found(predictor, kind, channels):
    net = copy.deepcopy(predictor)
    spec = build_task(kind, "t", channels)
    other = build_task("depth", "other", 1)
    net.add_head(other)
    net.add_head(spec)
    net.train()
    net.heads["other"].eval()
    frozen = net.backbone.body.conv1.weight
    frozen.requires_grad_(False)
    g = torch.Generator().manual_seed(0)
    label = {
        "semantic": lambda: torch.randint(0, channels, (2, 32, 32), generator=g),
        "depth": lambda: torch.rand(2, 1, 32, 32, generator=g) + 0.5,
        "normal": lambda: F.normalize(torch.randn(2, 3, 32, 32, generator=g), dim=1),
    }[kind]()
    loader = [{"image": torch.rand(2, 3, 32, 32, generator=g), "t": label}]
    flags = {n: m.training for n, m in net.named_modules()}
    buffers = {n: b.clone() for n, b in net.named_buffers()}
    for name in ("ewc", "mas"):
        method = make(name, {"t": spec, "other": other}, anchor_heads=True)  # the estimates of every part
        method.on_phase_end(Phase(1, ("t",), slice=1), net, loader)
        imp = method.terms[0]["importance"]
        assert {n: m.training for n, m in net.named_modules()} == flags
        assert all(torch.equal(b, buffers[n]) for n, b in net.named_buffers())
        assert all(p.grad is None for p in net.parameters())
        assert not frozen.requires_grad and "backbone.body.conv1.weight" not in imp
        assert not any(n.startswith("heads.other.") for n in imp)
        assert any(n.startswith("heads.t.") for n in imp)
        assert all(torch.isfinite(t).all() and (t >= 0).all() for t in imp.values())
        assert sum(t.sum() for t in imp.values()) > 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", ["ewc", "mas", "si"])
def test_runs_on_cuda(name):
    net, tasks = tiny()
    net = net.cuda()
    method = make(name, tasks)
    method.on_phase_start(Phase(0, ("depth",), slice=0), net)
    if name == "si":
        net.backbone.weight.grad = torch.ones_like(net.backbone.weight)
        with torch.no_grad():
            net.backbone.weight.sub_(0.1)
        method.after_optimizer_step(net)
    method.on_phase_end(Phase(0, ("depth",), slice=0), net, depth_batches())
    with torch.no_grad():
        net.backbone.weight.add_(0.1)
    value, _ = extra_loss(method, net, {}, Phase(1, ("seg",), slice=1))
    assert value.device.type == "cuda" and value > 0
