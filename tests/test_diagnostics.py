"""Loss-term diagnostics (`diag.every`): the worst-decile share against hand-computed loss maps, the
method hook that exposes the maps, the per-term gradients, and a tiny run that writes them."""
from __future__ import annotations

import csv
import pytest
import torch
from torch import nn

from conftest import tiny_overrides
from lhl.config import load_config
from lhl.data.protocol import Phase
from lhl.engine.diagnostics import LossTermDiagnostics, check_every
from lhl.engine.runner import run
from lhl.losses.pixel_share import worst_count, worst_share
from lhl.methods.base import Step
from lhl.methods.had import HAD
from lhl.methods.lwf import LwF
from lhl.runs.results import Results
from lhl.tasks import build_task


def _share(reduce, loss_map, valid=None):
    loss_map = loss_map.clone().requires_grad_(True)
    valid = torch.ones_like(loss_map, dtype=torch.bool) if valid is None else valid
    (g,) = torch.autograd.grad(reduce(loss_map, valid), loss_map)
    return worst_share(g, loss_map, valid).item()


def _plain(m, v):
    return (m * v).sum() / v.sum()


def _geometric(m, v):
    return m[v].log().mean().exp()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_plain_mean_puts_a_tenth_on_the_worst_decile_of_any_map(seed):
    g = torch.Generator().manual_seed(seed)
    loss_map = torch.rand(2, 5, 8, generator=g) * 10 ** torch.randn(2, 5, 8, generator=g)  # 80 pixels
    assert _share(_plain, loss_map) == pytest.approx(0.1, abs=1e-6)
    valid = torch.ones(2, 5, 8, dtype=torch.bool)
    valid[0, :, :4] = False  # 60 valid pixels: the worst 6 among them, invalid pixels never count
    assert _share(_plain, loss_map, valid) == pytest.approx(0.1, abs=1e-6)


def test_geometric_mean_share_is_its_formula():
    # G = exp(mean log L): dG/dL_i = G / (N L_i), so the share is (sum_worst 1/L) / (sum 1/L)
    loss_map = torch.tensor([[1.0] * 9 + [10.0]])  # worst decile: the one pixel at 10
    assert _share(_geometric, loss_map) == pytest.approx((1 / 10) / (9 + 1 / 10), rel=1e-6)  # = 1/91
    # the constructed map: 31 % "forgotten" pixels with 85 % of the loss
    forgotten, kept = 31, 69
    hi, lo = 0.85 / forgotten, 0.15 / kept
    loss_map = torch.tensor([[hi] * forgotten + [lo] * kept])
    assert _share(_plain, loss_map) == pytest.approx(0.1, abs=1e-6)
    expected = (10 / hi) / (forgotten / hi + kept / lo)  # the worst 10 pixels all hold `hi`
    assert _share(_geometric, loss_map) == pytest.approx(expected, rel=1e-5)
    assert worst_count(100, 0.1) == 10 and worst_count(3, 0.1) == 1


def _tasks():
    return {"seg": build_task("semantic", "seg", 4), "depth": build_task("depth", "depth", 1)}


def _step(method, net=None):
    torch.manual_seed(0)
    seg = torch.log_softmax(torch.randn(2, 4, 5, 4, requires_grad=True), dim=1)  # 40 pixels
    depth = torch.rand(2, 1, 5, 4) + 0.5
    teacher = {"seg": torch.log_softmax(torch.randn(2, 4, 5, 4), dim=1)}
    phase = Phase(1, ("depth",), ("seg",), ("seg", "depth"))
    return Step(net, {"seg": seg, "depth": depth}, teacher, {"depth": depth + 0.1}, phase)


@pytest.mark.parametrize("cls", [LwF, HAD])
def test_methods_expose_their_maps_only_when_asked(cls):
    method = cls(cls.Options(), _tasks())
    step = _step(method)
    plain_terms, _ = method.loss_terms(step)
    assert method.pixel_loss_maps() == {}  # off: nothing kept
    method.record_pixel_maps = True
    terms, _ = method.loss_terms(step)
    name = f"{method.log_prefix}/seg"
    assert torch.equal(terms[name], plain_terms[name])  # the term is the same, bit for bit
    loss_map, valid = method.pixel_loss_maps()[name]
    assert loss_map.shape == (2, 5, 4) and valid.all()
    (g,) = torch.autograd.grad(terms[name], loss_map)
    share = worst_share(g, loss_map, valid).item()
    if cls is LwF:  # the plain mean of its map
        assert share == pytest.approx(0.1, abs=1e-6)
    else:
        assert 0.0 <= share <= 1.0


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Linear(3, 3, bias=False)
        self.head = nn.Linear(3, 1, bias=False)


def test_measure_gives_each_terms_backbone_gradient():
    torch.manual_seed(0)
    net, x = _Net(), torch.randn(5, 3)
    feats = net.backbone(x)
    terms = {"depth": net.head(feats).pow(2).mean(), "lwf/seg": 2.0 * feats.sum(), "frozen": torch.tensor(1.0)}
    phase = Phase(1, ("depth",), ("seg",), ("seg", "depth"))
    method = LwF(LwF.Options(), _tasks())
    out = LossTermDiagnostics(2).measure(net, method, terms, {"lwf/seg/edge_keep": torch.tensor(0.5)}, phase)
    (g_new,) = torch.autograd.grad(terms["depth"], net.backbone.weight, retain_graph=True)
    (g_old,) = torch.autograd.grad(terms["lwf/seg"], net.backbone.weight, retain_graph=True)
    assert out["diag/depth/grad_norm"].item() == pytest.approx(g_new.norm().item(), rel=1e-6)
    assert out["diag/lwf/seg/grad_norm"].item() == pytest.approx(g_old.norm().item(), rel=1e-6)
    cos = (g_new * g_old).sum() / (g_new.norm() * g_old.norm())
    assert out["diag/lwf/seg/cos_new"].item() == pytest.approx(cos.item(), rel=1e-5)
    assert out["diag/depth/cos_new"].item() == pytest.approx(1.0, abs=1e-6)
    assert out["diag/lwf/seg/edge_keep"].item() == 0.5
    assert not any("frozen" in k for k in out)  # a term without a gradient is left out
    # the graph is still there for the step's own backward, whose gradients are those of a step
    # that measured nothing: training is the same with the diagnostics on
    (terms["depth"] + terms["lwf/seg"]).backward()
    measured = net.backbone.weight.grad.clone()
    net.zero_grad()
    feats = net.backbone(x)
    (net.head(feats).pow(2).mean() + 2.0 * feats.sum()).backward()
    assert torch.equal(net.backbone.weight.grad, measured)


def test_due_steps_and_the_switch():
    method = LwF(LwF.Options(), _tasks())
    diag = LossTermDiagnostics(3)
    assert [diag.due(method, s) for s in range(6)] == [False, False, True, False, False, True]
    assert method.record_pixel_maps  # step 5 is measured: the method keeps its maps for it
    fresh = LwF(LwF.Options(), _tasks())
    assert not LossTermDiagnostics(None).due(fresh, 2) and not fresh.record_pixel_maps
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="diag.every"):
            check_every(bad)


def test_a_run_with_diagnostics_writes_them(tmp_path, synth_cache):
    """`diag.every=1` on a two-phase HAD run: the diag/ columns, shares in [0, 1], cosines in [-1, 1]."""
    extra = {"method": "had", "diag.every": 1, "sequence.tasks": "[semantic,depth]", "train.max_steps": 2}
    run_dir = run(load_config([], tiny_overrides(tmp_path, synth_cache, **extra)))
    rows = list(csv.DictReader((run_dir / "logs" / "phase_1" / "metrics.csv").open()))
    cols = {k for r in rows for k, v in r.items() if k.startswith("diag/") and v}
    assert {f"diag/had/semantic/{m}" for m in ("grad_norm", "cos_new", "worst_decile_share", "edge_keep")} <= cols
    assert {"diag/depth/grad_norm", "diag/depth/cos_new"} <= cols
    shares = [float(r[k]) for r in rows for k in cols if k.endswith("worst_decile_share") and r[k]]
    assert len(shares) == 2 and all(0.0 <= s <= 1.0 for s in shares)
    assert all(-1.0 <= float(r[k]) <= 1.0 for r in rows for k in cols if k.endswith("cos_new") and r[k])
    assert len(Results.load(run_dir).phases) == 2


def test_mechanism_table_and_figure_from_run_logs(tmp_path):
    from lhl.reporting.diagnosis import main

    for seed, shares in ((0, (0.02, 0.04)), (1, (0.06, 0.08))):
        logs = tmp_path / "had" / f"seed{seed}" / "logs" / "phase_1"
        logs.mkdir(parents=True)
        rows = ["phase,step_global,diag/had/semantic/worst_decile_share,diag/had/semantic/edge_keep,loss/total"]
        rows += [f"1,{10 + i},{s},0.5,1.0" for i, s in enumerate(shares)] + ["1,12,,,1.0"]
        (logs / "metrics.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "fig.png"
    assert main(["--out", str(out), "--table", str(tmp_path / "t.md"), f"had={tmp_path}/had/seed*"]) == 0
    # per run the phase mean (0.03, 0.07), then mean ± sample std over the two runs
    assert "| had (n=2) | 2 | semantic | 0.050 ± 0.028 | 0.500 ± 0.000 | – | – |" in (tmp_path / "t.md").read_text()
    assert out.stat().st_size > 1000
