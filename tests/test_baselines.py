"""DER / DER++, iCaRL's herding, SGP and SPG against hand-computed values (CPU, seconds)."""
import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lhl.config.resolve import options_from_dict
from lhl.data.protocol import Phase
from lhl.methods import METHODS
from lhl.methods.base import Step
from lhl.methods.shared.herding import herding_order
from lhl.methods.shared.subspace import input_covariances, update_basis
from lhl.methods.spg import soft_mask
from lhl.tasks import build_task


def make(name, tasks, **opts):
    cls = METHODS.get(name)
    return cls(options_from_dict(cls.Options, opts, "test"), tasks)


class Net(nn.Module):
    """The predictor's interface: a 3x3-conv backbone with BatchNorm, 1x1-conv heads."""

    def __init__(self, specs, width=4):
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        self.heads = nn.ModuleDict({s.name: nn.Conv2d(width, s.channels, 1) for s in specs})
        self.specs = {s.name: s for s in specs}

    def forward(self, x, tasks=None):
        feat = self.backbone(x)
        return {t: self.specs[t].activate(self.heads[t](feat)) for t in (tasks or list(self.heads))}


def specs():
    return {"seg": build_task("semantic", "seg", 3), "depth": build_task("depth", "depth", 1)}


def batch(seed, n=4, task="seg"):
    g = torch.Generator().manual_seed(seed)
    b = {"image": torch.rand(n, 3, 6, 6, generator=g), "index": torch.arange(seed * n, seed * n + n)}
    b["seg"] = torch.randint(0, 3, (n, 6, 6), generator=g)
    b["depth"] = torch.rand(n, 1, 6, 6, generator=g) + 0.5
    return {k: v for k, v in b.items() if k in ("image", "index", task)}


# --- DER ------------------------------------------------------------------------------------------
def train_step(method, net, opt, b, phase):
    student = net(b["image"], list(phase.train_tasks))
    before = {t: v.detach().clone() for t, v in student.items()}
    terms, _ = method.loss_terms(Step(net, student, None, b, phase))
    opt.zero_grad()
    sum(terms.values()).backward()
    opt.step()
    method.observe(b, phase)
    return before, terms


def test_der_stores_the_pre_step_train_mode_outputs_of_the_trained_view():
    torch.manual_seed(0)
    tasks = specs()
    net = Net(tasks.values()).train()
    der = make("derpp", tasks, buffer_size=100, replay_batch=4, alpha_by_kind={"depth": 2.0})
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    p0, p1 = Phase(0, ("seg",), slice=0), Phase(1, ("depth",), ("seg",), slice=1)
    def centred_logits():  # train mode: BatchNorm uses the batch's statistics, as in the step
        with torch.no_grad():
            z = net.heads["seg"](net.backbone(batch(0)["image"]))
        return z - z.mean(1, keepdim=True)

    pre = centred_logits()
    before, terms = train_step(der, net, opt, batch(0), p0)
    assert set(terms) == {"seg"}  # empty buffer: nothing replayed
    centred = before["seg"] - before["seg"].mean(1, keepdim=True)  # log p − mean = logits − mean
    buf = der.buffer
    assert buf.extras["der/seg"].dtype == torch.float16 and buf.has_extra["der/seg"][:4].all()
    assert torch.equal(buf.extras["der/seg"][:4], centred.half())
    assert torch.allclose(buf.extras["der/seg"][:4].float(), pre, atol=2e-3)  # the pre-step logits
    assert (buf.extras["der/seg"][:4].float() - centred_logits()).abs().max() > 0.05  # not the post-step ones
    assert torch.equal(buf.images[:4], batch(0)["image"])  # the view the step trained on
    before_d, terms = train_step(der, net, opt, batch(1, task="depth"), p1)
    assert set(terms) == {"depth", "der/seg", "derpp/replay"}
    assert torch.equal(buf.extras["der/depth"][4:8], before_d["depth"].half())  # depth: activated (raw)
    assert not buf.has_extra["der/depth"][:4].any() and not buf.has_extra["der/seg"][4:8].any()
    # the MSE term by hand, on a draw holding both tasks (α per task type, weighted by share)
    slots = torch.tensor([0, 5, 6])
    got = der.logit_terms(net, slots, torch.device("cpu"))
    img = buf.images
    seg = net(img[[0, 0]], ["seg"])["seg"]
    seg_mse = ((seg - seg.mean(1, keepdim=True)) - buf.extras["der/seg"][[0, 0]].float()).pow(2).mean()
    dep_mse = (net(img[[5, 6]], ["depth"])["depth"] - buf.extras["der/depth"][[5, 6]].float()).pow(2).mean()
    assert torch.allclose(got["der/seg"], 0.1 * seg_mse / 3) and torch.allclose(got["der/depth"], 2.0 * dep_mse * 2 / 3)


def test_der_and_derpp_defaults_follow_mammoth():
    tasks = specs()
    der, derpp = make("der", tasks), make("derpp", tasks)
    assert (der.opts.alpha, der.opts.beta, der.opts.replay_batch, der.opts.buffer_size) == (0.3, 0.0, 8, 50)
    assert (derpp.opts.alpha, derpp.opts.beta) == (0.1, 0.5)
    with pytest.raises(ValueError, match="alpha"):
        make("der", tasks, alpha=-1)


# --- iCaRL ----------------------------------------------------------------------------------------
def reference_herding(features, count):
    chosen, total = [], torch.zeros(features.shape[1], dtype=torch.float64)
    mu = features.double().mean(0)
    for k in range(1, count + 1):
        best, best_cost = None, None
        for i in range(features.shape[0]):
            if i in chosen:
                continue
            cost = float(torch.linalg.norm(mu - (total + features[i].double()) / k))
            if best_cost is None or cost < best_cost:
                best, best_cost = i, cost
        chosen.append(best)
        total += features[best].double()
    return chosen


def test_herding_picks_the_known_greedy_order():
    # mean (0.6, 0.6): the closest single point is 2 (tie with 3, lowest wins), then 3 completes
    # the mean best, then 0 and 1 (tie, lowest first)
    f = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8], [0.8, 0.6]])
    assert herding_order(f, 4).tolist() == [2, 3, 0, 1]
    assert herding_order(f, 2).tolist() == [2, 3]
    g = F.normalize(torch.randn(30, 5, generator=torch.Generator().manual_seed(1)), dim=1)
    assert herding_order(g, 12).tolist() == reference_herding(g, 12)


# --- SGP ------------------------------------------------------------------------------------------
def explicit_patches(x, k=3, stride=2, pad=1, dil=1):
    """The representation matrix by loops: one column per (image, output position)."""
    xp = F.pad(x, (pad, pad, pad, pad)).double()
    n, c, h, w = xp.shape
    span = dil * (k - 1) + 1
    cols = []
    for b, i, j in itertools.product(range(n), range(0, h - span + 1, stride), range(0, w - span + 1, stride)):
        cols.append(xp[b, :, i:i + span:dil, j:j + span:dil].reshape(-1))
    return torch.stack(cols, dim=1)


def reference_sgp(r, basis, importance, threshold, alpha):
    """SGP's update_SGP (the release's steps) with SVDs of the explicit matrices."""
    def lam(s):
        return (alpha + 1) * s / (alpha * s + s.max())
    u1, s1, _ = torch.linalg.svd(r, full_matrices=False)
    total = (s1 ** 2).sum()
    if basis is None:
        k = int(((s1 ** 2).cumsum(0) / total < threshold).sum())
        return u1[:, :k], lam(s1[:k])
    proj = basis @ basis.T @ r
    old = basis.shape[1]
    uc, sc, _ = torch.linalg.svd(proj, full_matrices=False)
    on_old = (((basis.T @ uc[:, :old]) ** 2) @ sc[:old] ** 2).sqrt()
    u, s, _ = torch.linalg.svd(r - proj, full_matrices=False)
    acc, k = float(total - (s ** 2).sum()) / float(total), 0
    for e in ((s ** 2) / total).tolist():
        if acc >= threshold:
            break
        acc, k = acc + e, k + 1
    imp = lam(torch.cat([on_old, s[:k]]))
    imp[:old] = (imp[:old] + importance).clamp(0, 1)
    return torch.cat([basis, u[:, :k]], 1), imp


def test_sgp_bases_from_accumulated_covariance_equal_svd_of_patch_matrix():
    net = nn.Module()
    net.backbone = nn.Sequential(nn.Conv2d(2, 3, 3, stride=2, padding=1, bias=False)).double()
    g = torch.Generator().manual_seed(0)
    first = [{"image": torch.rand(3, 2, 7, 7, generator=g, dtype=torch.float64)} for _ in range(2)]
    second = [{"image": torch.rand(3, 2, 7, 7, generator=g, dtype=torch.float64) ** 3} for _ in range(2)]
    layers = {"w": net.backbone[0]}
    r1 = torch.cat([explicit_patches(b["image"]) for b in first], 1)
    r2 = torch.cat([explicit_patches(b["image"]) for b in second], 1)
    c1 = input_covariances(net, first, layers)["w"]
    assert torch.allclose(c1, r1 @ r1.T, rtol=1e-6, atol=1e-6)
    basis, imp = update_basis(c1, None, None, 0.97, 10.0)
    ref_b, ref_i = reference_sgp(r1, None, None, 0.97, 10.0)
    assert basis.shape == ref_b.shape and 0 < basis.shape[1] < 18
    assert torch.allclose(imp, ref_i, atol=1e-6)
    assert torch.allclose(basis @ basis.T, ref_b @ ref_b.T, atol=1e-6)  # same subspace
    assert torch.allclose((basis * ref_b).sum(0).abs(), torch.ones(basis.shape[1], dtype=basis.dtype), atol=1e-6)
    c2 = input_covariances(net, second, layers)["w"]
    b2, i2 = update_basis(c2, ref_b, ref_i, 0.973, 10.0)
    rb2, ri2 = reference_sgp(r2, ref_b, ref_i, 0.973, 10.0)
    assert b2.shape == rb2.shape and b2.shape[1] > basis.shape[1]
    assert torch.allclose(i2, ri2, atol=1e-6)
    assert torch.allclose(b2 @ torch.diag(i2) @ b2.T, rb2 @ torch.diag(ri2) @ rb2.T, atol=1e-6)


def protected_setup(project):
    torch.manual_seed(0)
    tasks = {"depth": build_task("depth", "depth", 1)}
    net = Net(tasks.values(), width=5)
    conv = net.backbone[0]
    # protected inputs: patches spanning a 6-dim subspace of the 27-dim patch space
    basis = torch.linalg.qr(torch.randn(27, 6))[0]
    sgp = make("sgp", tasks, project=project)
    name = "backbone.0.weight"
    sgp.bases, sgp.importance = {name: basis}, {name: torch.ones(6)}
    sgp.on_phase_start(Phase(1, ("depth",), slice=1), net)
    probe = (torch.randn(10, 6) @ basis.T)  # inputs inside the protected subspace
    return net, conv, sgp, probe, tasks


@pytest.mark.parametrize("project", ["update", "gradient"])
def test_projected_adam_update_keeps_the_protected_subspace_output(project):
    net, conv, sgp, probe, tasks = protected_setup(project)
    opt = torch.optim.Adam(net.parameters(), lr=0.05, weight_decay=0.1)
    w0 = conv.weight.detach().clone()
    bn0 = [p.detach().clone() for p in net.backbone[1].parameters()]
    stats0 = net.backbone[1].running_mean.clone()
    net.train()
    for seed in range(3):
        b = batch(seed, task="depth")
        opt.zero_grad()
        tasks["depth"].loss(net(b["image"], ["depth"])["depth"], b["depth"]).backward()
        sgp.before_optimizer_step(net)
        opt.step()
        sgp.after_optimizer_step(net)
    out = lambda w: probe @ w.reshape(w.shape[0], -1).T  # noqa: E731
    moved = (conv.weight - w0).abs().max()
    assert moved > 1e-3
    change = (out(conv.weight.detach()) - out(w0)).abs().max()
    if project == "update":
        assert change < 1e-5
        assert all(torch.equal(p, q) for p, q in zip(net.backbone[1].parameters(), bn0))  # 1-D frozen
        assert torch.equal(net.backbone[1].running_mean, stats0)  # BatchNorm in eval mode
    else:  # Adam rescales the projected gradient per coordinate: the subspace is not protected
        assert change > 1e-3


# --- SPG ------------------------------------------------------------------------------------------
def test_spg_mask_equals_the_formula_and_accumulates_by_max():
    torch.manual_seed(0)
    tasks = specs()
    net = Net(tasks.values()).double()
    net.eval()
    spg = make("spg", tasks)
    data = [{k: (v.double() if v.is_floating_point() else v) for k, v in batch(s, task="depth").items()}
            for s in (1, 2)]
    phase = Phase(1, ("depth",), ("seg",), slice=1)
    spg.on_phase_end(phase, net, data)
    params = [p for n, p in net.named_parameters() if n.startswith("backbone.")]
    names = [n for n, _ in net.named_parameters() if n.startswith("backbone.")]

    def grads(fn):
        total = [torch.zeros_like(p) for p in params]
        for b in data:
            for t, g in zip(total, torch.autograd.grad(fn(b), params)):
                t += g / len(data)
        return total

    g_depth = grads(lambda b: tasks["depth"].loss(net(b["image"], ["depth"])["depth"], b["depth"]))
    g_seg = grads(lambda b: net.heads["seg"](net.backbone(b["image"])).sum())
    for n, a, b in zip(names, g_depth, g_seg):
        z = lambda g: torch.tanh((g - g.mean()) / g.std()).abs()  # noqa: E731
        assert torch.allclose(spg.accumulated[n], torch.maximum(z(a), z(b)), atol=1e-10), n
    first = {n: a.clone() for n, a in spg.accumulated.items()}
    spg.on_phase_end(Phase(1, ("depth",), ("seg",), slice=1), net, data[:1])
    assert all(torch.all(spg.accumulated[n] >= first[n]) for n in names)
    assert torch.equal(soft_mask(torch.ones(3)), torch.zeros(3))
    assert torch.equal(soft_mask(torch.ones(1)), torch.zeros(1))


def test_spg_masked_adam_update_of_a_fully_important_parameter_is_zero():
    torch.manual_seed(0)
    tasks = specs()
    net = Net(tasks.values())
    twin = Net(tasks.values())
    twin.load_state_dict(net.state_dict())
    spg = make("spg", tasks)
    conv, bn = "backbone.0.weight", "backbone.1.weight"
    spg.accumulated = {conv: torch.ones_like(net.backbone[0].weight), bn: torch.full_like(net.backbone[1].weight, 0.25)}
    phase = Phase(1, ("depth",), ("seg",), slice=1)
    spg.on_phase_start(phase, net)
    assert spg._head_scale == pytest.approx(1 - (108 + 1.0) / 112)
    b = batch(3, task="depth")
    for model, masked in ((net, True), (twin, False)):
        opt = torch.optim.Adam(model.parameters(), lr=0.01, weight_decay=0.1)
        start = {n: p.detach().clone() for n, p in model.named_parameters()}
        tasks["depth"].loss(model(b["image"], ["depth"])["depth"], b["depth"]).backward()
        if masked:
            spg.before_optimizer_step(model)
        opt.step()
        if masked:
            spg.after_optimizer_step(model)
        model.delta = {n: p.detach() - start[n] for n, p in model.named_parameters()}
    assert torch.equal(net.delta[conv], torch.zeros_like(net.delta[conv]))
    assert twin.delta[conv].abs().max() > 1e-3
    assert torch.allclose(net.delta[bn], 0.75 * twin.delta[bn], atol=1e-7)
    head = "heads.depth.weight"
    assert torch.allclose(net.delta[head], spg._head_scale * twin.delta[head], atol=1e-7)
    assert torch.equal(net.delta["heads.seg.weight"], torch.zeros_like(net.delta["heads.seg.weight"]))
