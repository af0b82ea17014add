"""HAD as the paper states it (`mode: paper`): hand-computed values for every branch of
`had_loss`, the ablation switches, the paper's weighting and the training paradigms."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from conftest import method_loss
from torch import nn

from lhl.data.protocol import Phase
from lhl.losses import sobel_magnitude
from lhl.methods.had import had_loss
from lhl.methods.had import HAD
from lhl.tasks import build_task

LN2 = math.log(2.0)


def depth_case():
    """teacher [[0, 1], [2, 4]] -> normalised [[0, .25], [.5, 1]]: group > 0.5 = {(1,1)};
    student [[1, 3], [2, 6]] -> L = [[1, 2], [0, 2]]."""
    teacher = torch.tensor([[0.0, 1.0], [2.0, 4.0]]).view(1, 1, 2, 2)
    student = torch.tensor([[1.0, 3.0], [2.0, 6.0]]).view(1, 1, 2, 2).requires_grad_()
    return student, teacher


def semantic_case():
    """teacher argmax [[0, 0], [1, 0]]; the student's probability there .5, .25, .5, .125:
    NLL = [[1, 2], [1, 3]] ln 2."""
    label = torch.tensor([[0, 0], [1, 0]])
    teacher = F.one_hot(label, 2).permute(2, 0, 1).unsqueeze(0).float().log_softmax(dim=1)
    p = torch.tensor([[0.5, 0.25], [0.5, 0.125]])
    at_label = torch.stack([torch.where(label == 0, p, 1 - p), torch.where(label == 1, p, 1 - p)])
    return at_label.unsqueeze(0).log().requires_grad_(), teacher


def test_sobel_of_the_depth_loss_map_by_hand():
    # replicate padding of [[1, 2], [0, 2]]: Gx = [[5, 5], [7, 7]], Gy = [[-3, -1], [-3, -1]]
    mag = sobel_magnitude(torch.tensor([[[1.0, 2.0], [0.0, 2.0]]]), replicate_padding=True)
    expected = torch.tensor([[[34.0, 26.0], [58.0, 50.0]]]).sqrt()
    assert torch.allclose(mag, expected)


def test_depth_db_geometric_and_sg_by_hand():
    s, t = depth_case()
    term, parts = had_loss("depth", s, t, return_parts=True)
    db = (2.0 + (1.0 * 2.0 * 1e-6) ** (1 / 3)) / 2  # high group {2}; low group {1, 2, 0 -> 1e-6}
    # normalised Sobel: (1,0) = 1 kept, (1,1) = (√50-√26)/(√58-√26) = .78 not: the kept loss is 0
    assert parts["db"].item() == pytest.approx(db, rel=1e-5)
    assert parts["sg"].item() == pytest.approx(0.0, abs=1e-7)
    assert term.item() == pytest.approx(db, rel=1e-5)
    # k = 0.7 keeps (1,0) and (1,1): losses 0 and 2
    assert had_loss("depth", s, t, scalar_val=0.7, return_parts=True)[1]["sg"].item() == pytest.approx(1.0)
    term.backward()
    assert s.grad is not None and torch.isfinite(s.grad).all()


def test_depth_switches_by_hand():
    s, t = depth_case()
    assert had_loss("depth", s, t, group_mean="arithmetic", return_parts=True)[1]["db"].item() == pytest.approx(1.5)
    # 5 bins: 0, .25, .5, 1 -> bins 0, 1, 2, 4: each pixel its own group
    assert had_loss("depth", s, t, bins=5, return_parts=True)[1]["db"].item() == pytest.approx((1 + 2 + 1e-6 + 2) / 4)
    assert had_loss("depth", s, t, db=False, return_parts=True)[1]["db"].item() == pytest.approx(1.25)
    assert had_loss("depth", s, t, sg=False, return_parts=True)[1]["sg"].item() == pytest.approx(1.25)
    assert had_loss("depth", s, t, db=False, sg=False).item() == pytest.approx(2.5)  # LwF's mean, twice


def test_semantic_db_per_class_and_prediction_salience_by_hand():
    s, t = semantic_case()
    term, parts = had_loss("semantic", s, t, return_parts=True)
    db = (LN2 * 6 ** (1 / 3) + LN2) / 2  # class 0: geometric mean of ln2 (1, 2, 3); class 1: ln2
    assert parts["db"].item() == pytest.approx(db, rel=1e-5)
    arith = had_loss("semantic", s, t, group_mean="arithmetic", return_parts=True)[1]["db"]
    assert arith.item() == pytest.approx(1.5 * LN2, rel=1e-5)
    # Sobel of the label map [[0, 0], [1, 0]]: magnitudes √10, √2, √18, √10: only (1,0) passes 0.9
    pred = had_loss("semantic", s, t, salience_source="prediction", return_parts=True)[1]
    assert pred["sg"].item() == pytest.approx(LN2, rel=1e-5)
    assert pred["edge_keep"].item() == pytest.approx(0.25)
    # the task's pseudo-label (argmax) gives the same as the teacher's log-probabilities
    assert had_loss("semantic", s, t.argmax(dim=1)).item() == pytest.approx(term.item())


def test_semantic_groups_are_per_image():
    s, t = semantic_case()
    both_s, both_t = torch.cat([s, s.detach()]), torch.cat([t, t.flip(1)])  # image 2: labels swapped
    one = [had_loss("semantic", x, y, return_parts=True)[1]["db"] for x, y in ((s, t), (s.detach(), t.flip(1)))]
    assert had_loss("semantic", both_s, both_t, return_parts=True)[1]["db"].item() == pytest.approx(
        (one[0] + one[1]).item() / 2, rel=1e-5)


def test_normal_full_cosine_flat_groups_and_empty_salience_by_hand():
    teacher = torch.tensor([[0.0, 1.0], [0.0, 0.0], [1.0, 0.0]]).view(1, 3, 1, 2)  # channel means 1/3, 1/3
    student = torch.tensor([[0.0, 0.0], [1.0, 1.0], [1.0, 0.0]]).view(1, 3, 1, 2)  # (0,1,1) and (0,1,0)
    la, lb = 1 - 1 / math.sqrt(2), 1.0
    term, parts = had_loss("normal", student, teacher, return_parts=True)
    assert parts["db"].item() == pytest.approx(math.sqrt(la * lb), rel=1e-5)  # one group (flat map)
    assert parts["sg"].item() == 0.0  # equal Sobel magnitudes normalise to 0: nothing kept
    arith = had_loss("normal", student, teacher, group_mean="arithmetic", sg=False, return_parts=True)[1]
    assert arith["db"].item() == pytest.approx((la + lb) / 2) and arith["sg"].item() == pytest.approx((la + lb) / 2)


def test_scalar_ignores_nan_teacher_pixels():
    teacher = torch.tensor([[0.0, float("nan")], [2.0, 4.0]]).view(1, 1, 2, 2)
    student = torch.tensor([[1.0, 9.0], [2.0, 6.0]]).view(1, 1, 2, 2).requires_grad_()
    term = had_loss("scalar", student, teacher, db=False, sg=False)
    assert term.item() == pytest.approx(2 * (1 + 0 + 2) / 3)
    term.backward()
    assert torch.isfinite(student.grad).all()


def test_faithful_and_fixed_return_the_release_terms():
    s, t = depth_case()
    from lhl.losses import HADConfig, had_term
    task = build_task("depth", "depth", 1)
    for mode in ("faithful", "fixed"):
        assert had_loss("depth", s, t, mode=mode).item() == pytest.approx(
            had_term(task, s, t, HADConfig.for_mode(mode))[0].item())
    with pytest.raises(ValueError, match="only in HAD mode 'paper'"):
        had_loss("depth", s, t, mode="fixed", bins=5)
    with pytest.raises(ValueError, match="mends"):
        had_loss("depth", s, t, mode="paper", full_cosine=True)
    assert had_loss("depth", s, t, mode="fixed", db=False, sg=False).item() == pytest.approx(1.0 * 4 / 3)


@pytest.mark.parametrize("kind, channels", [("semantic", 5), ("depth", 1), ("normal", 3), ("scalar", 2)])
def test_paper_mode_runs_on_the_meta_device(kind, channels):
    raw = torch.randn(2, channels, 8, 8, device="meta", requires_grad=True)
    other = torch.randn(2, channels, 8, 8, device="meta")
    student = F.log_softmax(raw, dim=1) if kind == "semantic" else raw
    for opts in ({}, {"bins": 10, "group_mean": "arithmetic", "salience_source": "prediction"}):
        term = had_loss(kind, student, other, **opts)
        term.backward(retain_graph=True)
        assert term.device.type == "meta"


def test_options_are_checked():
    for bad in (dict(bins=1), dict(group_mean="median"), dict(salience_source="x"), dict(weighting="x"),
                dict(paradigm="x"), dict(db=1), dict(bins=5, mode="fixed"), dict(new_first_steps=-1)):
        mode = bad.pop("mode", "paper")
        with pytest.raises(ValueError):
            HAD.Options(mode=mode, ablation=bad)
    assert HAD.Options(mode="paper").resolved_weighting == "paper"
    assert HAD.Options(mode="fixed").resolved_weighting == "release"


def test_paper_weighting_divides_by_twice_the_earlier_phases():
    tasks = {"a": build_task("depth", "a", 1), "b": build_task("depth", "b", 1), "c": build_task("depth", "c", 1)}
    s, t = depth_case()
    s = s.detach()
    student, teacher = {"a": s, "b": s, "c": s}, {"a": t, "b": t}
    one = had_loss("depth", s, t).item()
    for weighting, factor in (("paper", 3.0 / (2 * 2)), ("release", 3.0 / 2)):
        method = HAD(HAD.Options(mode="paper", ablation={"weighting": weighting}), tasks)
        total, logs = method_loss(method, student, teacher, {"c": t}, ["c"], ["a", "b"])  # phase index 2 (t = 3)
        assert logs["loss/had/a"].item() == pytest.approx(factor * one, rel=1e-6)
        assert total.item() == pytest.approx(tasks["c"].loss(s, t).item() + 2 * factor * one, rel=1e-6)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Linear(2, 2)
        self.heads = nn.ModuleDict({"old": nn.Linear(2, 1), "new": nn.Linear(2, 1)})


def _step_grads(method, net, phase):
    method.on_phase_start(phase, net)
    feat = net.backbone(torch.ones(1, 2))
    (net.heads["old"](feat) + net.heads["new"](feat)).sum().backward()
    method.before_optimizer_step(net)
    method.after_optimizer_step(net)
    return {n: p.grad is not None and bool(p.grad.abs().sum() > 0) for n, p in net.named_parameters()}


def test_paradigms_choose_what_steps():
    tasks = {"old": build_task("depth", "old", 1), "new": build_task("depth", "new", 1)}
    phase = Phase(1, ("new",), ("old",), ("old", "new"))
    got = _step_grads(HAD(HAD.Options(mode="paper", ablation={"paradigm": "new_decoder_only"}), tasks), Net(), phase)
    assert [n for n, g in got.items() if g] == ["heads.new.weight", "heads.new.bias"]
    # old_decoders_only: the old head's input is detached, so only the new head reaches the backbone
    net, method = Net(), HAD(HAD.Options(mode="paper", ablation={"paradigm": "old_decoders_only"}), tasks)
    method.on_phase_start(phase, net)
    net.heads["old"](net.backbone(torch.ones(1, 2))).sum().backward()
    assert net.backbone.weight.grad is None and net.heads["old"].weight.grad is not None
    method.on_phase_end(phase, net, None)
    # new_first with 1 step first: step 1 all parameters, step 2 the old head only
    method = HAD(HAD.Options(mode="paper", ablation={"paradigm": "new_first", "new_first_steps": 1}), tasks)
    assert all(_step_grads(method, Net(), phase).values())
    assert method.paradigm.patching()
    got = _step_grads(method, Net(), phase)
    assert [n for n, g in got.items() if g] == ["heads.old.weight", "heads.old.bias"]


def test_frozen_parts_keep_their_batch_norm_statistics():
    tasks = {"old": build_task("depth", "old", 1), "new": build_task("depth", "new", 1)}
    net = Net()
    net.backbone = nn.BatchNorm1d(2)
    net.forward = lambda x: {t: h(net.backbone(x)) for t, h in net.heads.items()}
    method = HAD(HAD.Options(mode="paper", ablation={"paradigm": "new_decoder_only"}), tasks)
    method.on_phase_start(Phase(1, ("new",), ("old",), ("old", "new")), net)
    net.train()
    net(torch.randn(4, 2) + 5.0)
    assert torch.equal(net.backbone.running_mean, torch.zeros(2)) and net.heads["new"].training
    assert not net.heads["old"].training
