"""HeteroAKD and the KD baselines against values computed by hand on 1-4 pixel tensors."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lhl.distill.baselines import ce_loss, cwd_loss, kd_loss
from lhl.distill.heteroakd import (
    WEIGHT_AXES, HeteroAKD, aligned_target, knowledge_mix, knowledge_weights, reliability,
    soft_target_terms, weighted_soft_loss,
)

KL_75_50 = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)  # KL(Bern(.75) || Bern(.5)) = 0.1308


def softplus(x):
    return math.log1p(math.exp(x))


def sigmoid(x):
    return 1 / (1 + math.exp(-x))


def lmap(*pixels):
    """Logits [1, C, 1, P] from per-pixel class-logit lists."""
    return torch.tensor(pixels, dtype=torch.float32).T.reshape(1, len(pixels[0]), 1, len(pixels))


def test_aligned_target_onehot_ignore_and_nearest_resize():
    target = torch.tensor([[[0, 1, -1, 2], [0, 1, -1, 2]]])
    onehot, valid, small = aligned_target(target, 3, (2, 4))
    assert valid.tolist() == [[[True, True, False, True]] * 2]
    assert onehot[0, :, 0].tolist() == [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1]]
    onehot, valid, small = aligned_target(target, 3, (1, 2))  # nearest: columns 0 and 2
    assert small.tolist() == [[[0, -1]]] and valid.tolist() == [[[True, False]]]
    assert onehot.sum().item() == 1


def test_reliability_is_bce_per_class_and_zero_on_ignore():
    z = lmap([2.0, -1.0], [0.5, 0.5])
    onehot, valid, _ = aligned_target(torch.tensor([[[1, -1]]]), 2, (1, 2))
    h = reliability(z, onehot, valid, "sigmoid")
    assert h[0, :, 0, 0].tolist() == pytest.approx([softplus(2.0), softplus(1.0)], abs=1e-6)
    assert h[0, :, 0, 1].tolist() == [0.0, 0.0]
    with pytest.raises(ValueError, match="kd.heteroakd.reliability='tanh'"):
        reliability(z, onehot, valid, "tanh")


def test_calibrated_reliability_is_bce_of_the_softmax_probabilities():
    # 3 classes, label 1: p = softmax(ln 1, ln 2, ln 5) = (.125, .25, .625)
    z = lmap([0.0, math.log(2), math.log(5)], [7.0, 7.0, 7.0])
    onehot, valid, _ = aligned_target(torch.tensor([[[1, -1]]]), 3, (1, 2))
    h = reliability(z, onehot, valid)  # the default form
    expected = [-math.log(1 - 0.125), -math.log(0.25), -math.log(1 - 0.625)]
    assert h[0, :, 0, 0].tolist() == pytest.approx(expected, abs=1e-6)
    assert h[0, :, 0, 1].tolist() == [0.0, 0.0, 0.0]
    assert torch.allclose(reliability(z + 100.0, onehot, valid), h, atol=1e-5)  # no absolute level
    # near-certain predictions stay finite: p_c -> 1 on a wrong class is a large, finite H
    sure = reliability(lmap([0.0, 0.0, 200.0]), onehot[..., :1], valid[..., :1])
    assert torch.isfinite(sure).all() and sure[0, 2, 0, 0] > 50 and sure[0, 1, 0, 0] > 150


def test_kmm_teacher_better_on_one_class_worse_on_other():
    # pixel 0 (label 0): the teacher is right on classes 0 and 2, wrong on class 1 (student right there);
    # pixel 1 (label 2): the student is right on classes 0 and 2, both equal on class 1
    z_t = lmap([3.0, 1.0, -2.0], [1.0, -1.0, -1.0])
    z_s = lmap([-1.0, -2.0, 0.0], [-2.0, -1.0, 2.0])
    onehot, valid, _ = aligned_target(torch.tensor([[[0, 2]]]), 3, (1, 2))
    h_t, h_s = reliability(z_t, onehot, valid, "sigmoid"), reliability(z_s, onehot, valid, "sigmoid")
    s_t, z_h = knowledge_mix(z_t, z_s, h_t, h_s, eps=0.0)
    # BCE of sigmoid(z) against y: softplus(-z) for y = 1, softplus(z) for y = 0
    ht = [[softplus(-3.0), softplus(1.0), softplus(-2.0)], [softplus(1.0), softplus(-1.0), softplus(1.0)]]
    hs = [[softplus(1.0), softplus(-2.0), softplus(0.0)], [softplus(-2.0), softplus(-1.0), softplus(-2.0)]]
    share = [[b / (a + b) for a, b in zip(ht[p], hs[p])] for p in range(2)]
    for p in range(2):
        assert s_t[0, :, 0, p].tolist() == pytest.approx(share[p], abs=1e-6)
    # at one pixel the teacher's share differs across classes: high where it is the better one
    assert share[0][0] > 0.9 and share[0][1] < 0.1 and 0.8 < share[0][2] < 0.9
    assert share[1][1] == pytest.approx(0.5) and share[1][0] < 0.1
    zt, zs = [[3.0, 1.0, -2.0], [1.0, -1.0, -1.0]], [[-1.0, -2.0, 0.0], [-2.0, -1.0, 2.0]]
    for p in range(2):
        expected = [share[p][c] * zt[p][c] + (1 - share[p][c]) * zs[p][c] for c in range(3)]
        assert z_h[0, :, 0, p].tolist() == pytest.approx(expected, abs=1e-5)
    # the hybrid is more reliable than the worse of the two on every class where they differ, and
    # than the student at pixel 0 / the teacher at pixel 1 over all classes
    h_h = reliability(z_h, onehot, valid, "sigmoid")
    worse, differ = torch.maximum(h_t, h_s), (h_t - h_s).abs() > 1e-3
    assert (h_h <= worse + 1e-6).all() and (h_h < worse)[differ].all() and differ.sum() == 5
    assert h_h[..., 0].sum() < h_s[..., 0].sum() and h_h[..., 1].sum() < h_t[..., 1].sum()


def test_kmm_targets_are_detached():
    z_t = torch.randn(1, 3, 2, 2, requires_grad=True)
    z_s = torch.randn(1, 3, 2, 2, requires_grad=True)
    h = torch.rand(1, 3, 2, 2, requires_grad=True)
    s_t, z_h = knowledge_mix(z_t, z_s, h, h)
    assert not s_t.requires_grad and not z_h.requires_grad


def test_kem_weights_class_axis_hand_values():
    h_s = torch.tensor([1.0, 2.0]).reshape(1, 2, 1, 1).repeat(1, 1, 1, 2)
    h_h = torch.tensor([2.0, 0.0]).reshape(1, 2, 1, 1).repeat(1, 1, 1, 2)
    valid = torch.tensor([[[True, False]]])
    w = knowledge_weights(h_s, h_h, valid, "class")
    # logits: 1 + max(0, -1) = 1 and 2 + max(0, 2) = 4; rescaled to mean 1 over the 2 classes
    e1, e4 = math.exp(1), math.exp(4)
    assert w[0, :, 0, 0].tolist() == pytest.approx([2 * e1 / (e1 + e4), 2 * e4 / (e1 + e4)], abs=1e-6)
    assert w[0, :, 0, 1].tolist() == [0.0, 0.0]


def test_kem_weights_pixel_and_all_axes_skip_ignored_pixels():
    h_s = torch.tensor([[0.0, 1.0, 9.0], [1.0, 1.0, 9.0]]).reshape(1, 2, 1, 3)
    h_h = torch.zeros_like(h_s)
    valid = torch.tensor([[[True, True, False]]])
    w = knowledge_weights(h_s, h_h, valid, "pixel")
    # class 0 logits (0, 2): 2 * softmax; class 1 (2, 2): 1, 1; the ignored pixel gets 0
    assert w[0, 0, 0].tolist() == pytest.approx([2 / (1 + math.e**2), 2 * math.e**2 / (1 + math.e**2), 0], abs=1e-6)
    assert w[0, 1, 0].tolist() == pytest.approx([1, 1, 0], abs=1e-6)
    w = knowledge_weights(h_s, h_h, valid, "all")
    z = 1 + 3 * math.e**2
    assert w[0, :, 0, :2].flatten().tolist() == pytest.approx([4 / z, 4 * math.e**2 / z, 4 * math.e**2 / z, 4 * math.e**2 / z], abs=1e-6)
    assert w[0, :, 0, 2].tolist() == [0.0, 0.0]
    with pytest.raises(ValueError, match="weight_axis"):
        knowledge_weights(h_s, h_h, valid, "row")


def test_kem_weights_pixel_axis_normalises_per_image():
    # logit = H_S + max(0, H_S - H_H) = 2 H_S with H_H = 0; class 1 is flat
    h_s = torch.tensor([[[0.0, math.log(3) / 2, 5.0], [1.0, 1.0, 1.0]],
                        [[0.0, 0.0, math.log(2) / 2], [1.0, 1.0, 1.0]]]).reshape(2, 2, 1, 3)
    valid = torch.tensor([[[True, True, False]], [[True, True, True]]])
    w = knowledge_weights(h_s, torch.zeros_like(h_s), valid, "pixel")
    # image 0: softmax(0, ln 3) * 2 labelled pixels; image 1: softmax(0, 0, ln 2) * 3 labelled pixels
    assert w[0, 0, 0].tolist() == pytest.approx([0.5, 1.5, 0.0], abs=1e-6)
    assert w[1, 0, 0].tolist() == pytest.approx([0.75, 0.75, 1.5], abs=1e-6)
    assert w[0, 1, 0].tolist() == pytest.approx([1, 1, 0], abs=1e-6)
    assert w[1, 1, 0].tolist() == pytest.approx([1, 1, 1], abs=1e-6)


@pytest.mark.parametrize("axis", WEIGHT_AXES)
def test_kem_weights_carry_no_gradient(axis):
    h_s = torch.rand(2, 3, 2, 2, requires_grad=True)
    h_h = torch.rand(2, 3, 2, 2, requires_grad=True)
    valid = torch.ones(2, 2, 2, dtype=torch.bool)
    w = knowledge_weights(h_s, h_h, valid, axis)
    assert not w.requires_grad and w.grad_fn is None
    x = torch.rand(2, 3, 2, 2, requires_grad=True)
    (w * x).sum().backward()
    assert h_s.grad is None and h_h.grad is None and x.grad is not None


def test_soft_target_terms_binary_softmax_and_temperature():
    z_h, z_s = lmap([math.log(3), 0.0]), lmap([0.0, 0.0])
    binary = soft_target_terms(z_h, z_s, 1.0, "binary")
    assert binary[0, :, 0, 0].tolist() == pytest.approx([KL_75_50, 0.0], abs=1e-6)
    soft = soft_target_terms(z_h, z_s, 1.0, "softmax")
    # generalised KL per class: p log(p / q) - p + q with p = (.75, .25), q = (.5, .5)
    assert soft[0, :, 0, 0].tolist() == pytest.approx(
        [0.75 * math.log(1.5) - 0.25, 0.25 * math.log(0.5) + 0.25], abs=1e-6)
    assert soft.sum().item() == pytest.approx(KL_75_50, abs=1e-6)
    assert torch.equal(soft_target_terms(z_h, z_s), soft)  # the default form is the module's
    hot = soft_target_terms(lmap([2 * math.log(3), 0.0]), z_s, 2.0, "binary")
    assert hot[0, 0, 0, 0].item() == pytest.approx(4 * KL_75_50, abs=1e-6)


def test_softmax_terms_sum_to_the_categorical_kl():
    torch.manual_seed(0)
    z_h, z_s = 3 * torch.randn(2, 4, 3, 3), 3 * torch.randn(2, 4, 3, 3)
    for tau in (1.0, 2.0):
        terms = soft_target_terms(z_h, z_s, tau, "softmax")
        kl = F.kl_div(F.log_softmax(z_s / tau, 1), F.log_softmax(z_h / tau, 1), reduction="none",
                      log_target=True).sum(1) * tau**2
        assert torch.allclose(terms.sum(1), kl, atol=1e-5)
        assert (terms >= -1e-6).all()


@pytest.mark.parametrize("form", ["softmax", "binary"])
@pytest.mark.parametrize("axis", WEIGHT_AXES)
def test_weighted_soft_loss_is_stationary_at_the_target(form, axis):
    torch.manual_seed(0)
    z_h = 2 * torch.randn(2, 3, 2, 2)
    valid = torch.tensor([[[True, True], [True, False]], [[True, True], [True, True]]])
    w = knowledge_weights(3 * torch.rand(2, 3, 2, 2), 3 * torch.rand(2, 3, 2, 2), valid, axis)
    assert w[valid[:, None].expand_as(w)].std() > 0.1  # W is far from uniform
    z_s = z_h.clone().requires_grad_(True)
    weighted_soft_loss(soft_target_terms(z_h, z_s, 2.0, form), w, valid).backward()
    assert z_s.grad.abs().max().item() < 1e-6
    if form == "softmax":  # the bare KL terms p log(p / q) under the same W are not stationary there
        z_s.grad = None
        p, log_q = F.softmax(z_h, 1), F.log_softmax(z_s, 1)
        weighted_soft_loss(p * (p.log() - log_q), w, valid).backward()
        assert z_s.grad.abs().max().item() > 1e-3
    # the whole stage: a teacher equal to the student makes Z_H = Z_S (up to a per-pixel constant in
    # the calibrated form, which the softmax form ignores), with W from KEM
    akd = HeteroAKD(3, [1], [1], weight_axis=axis, kl_form=form, tau=2.0,
                    reliability="softmax" if form == "softmax" else "sigmoid")
    onehot, valid, _ = aligned_target(torch.tensor([[[0, 1], [2, -1]], [[1, 1], [0, 2]]]), 3, (2, 2))
    z_s = z_h.clone().requires_grad_(True)
    akd.stage_loss(z_h.clone(), z_s, onehot, valid)["akd"].backward()
    assert z_s.grad.abs().max().item() < 1e-6


def _hand_stage_loss(zt_pixels, zs_pixels, labels, form="softmax", c=3, eps=1e-6):
    """Stage loss (KMM, KEM over classes, generalised-KL softmax form, tau 1) in plain floats, with
    the calibrated reliability ("softmax": BCE of softmax probabilities, logits centred before the
    mix) or the literal one ("sigmoid": BCE of sigmoid(z), raw logits mixed)."""

    def softmax(z):
        return [math.exp(v) / sum(math.exp(u) for u in z) for v in z]

    def rel(z, y):
        if form == "sigmoid":
            return [softplus(-z[k]) if k == y else softplus(z[k]) for k in range(c)]
        p = softmax(z)
        return [-math.log(p[k]) if k == y else -math.log(1 - p[k]) for k in range(c)]

    total, n = 0.0, 0
    for zt, zs, y in zip(zt_pixels, zs_pixels, labels):
        if y < 0:
            continue
        n += 1
        if form == "softmax":
            zt, zs = [v - sum(zt) / c for v in zt], [v - sum(zs) / c for v in zs]
        h_t, h_s = rel(zt, y), rel(zs, y)
        s_t = [h_s[k] / (h_t[k] + h_s[k] + eps) for k in range(c)]
        z_h = [s_t[k] * zt[k] + (1 - s_t[k]) * zs[k] for k in range(c)]
        h_h = rel(z_h, y)
        e = [math.exp(h_s[k] + max(0.0, h_s[k] - h_h[k])) for k in range(c)]
        w = [c * v / sum(e) for v in e]
        p, q = softmax(z_h), softmax(zs)
        total += sum(w[k] * (p[k] * math.log(p[k] / q[k]) - p[k] + q[k]) for k in range(c))
    return total / n


@pytest.mark.parametrize("form,value", [("softmax", 0.427508), ("sigmoid", 0.414919)])
def test_stage_loss_hand_value(form, value):
    zt = [[2.0, -1.0, 0.5], [-1.0, 1.5, 0.0], [9.0, 9.0, 9.0]]
    zs = [[0.0, 0.5, -0.5], [0.5, -1.0, 1.0], [0.0, 0.0, 0.0]]
    labels = [0, 2, -1]
    akd = HeteroAKD(3, [1], [1]) if form == "softmax" else HeteroAKD(3, [1], [1], reliability="sigmoid")
    onehot, valid, _ = aligned_target(torch.tensor([[labels]]), 3, (1, 3))
    z_s = lmap(*zs).requires_grad_(True)
    out = akd.stage_loss(lmap(*zt), z_s, onehot, valid)
    expected = _hand_stage_loss(zt, zs, labels, form)
    assert expected == pytest.approx(value, abs=1e-6)
    assert out["akd"].item() == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize("axis", WEIGHT_AXES)
@pytest.mark.parametrize("form", ["softmax", "sigmoid"])
def test_teacher_share_and_weights_ignore_a_per_pixel_offset_of_the_logits(form, axis):
    """The projectors are trained by shift-invariant losses only, so each pixel's mean projected
    logit is arbitrary: the calibrated reliability must not read it; the literal sigmoid form does."""
    torch.manual_seed(0)
    z_t, z_s = 2 * torch.randn(2, 4, 3, 3), 2 * torch.randn(2, 4, 3, 3)
    target = torch.randint(-1, 4, (2, 3, 3))
    onehot, valid, _ = aligned_target(target, 4, (3, 3))
    akd = HeteroAKD(4, [1], [1], weight_axis=axis, reliability=form)
    a_t, a_s = 3 * torch.randn(2, 1, 3, 3), 3 * torch.randn(2, 1, 3, 3)  # independent offsets per pixel
    base = akd.mix_and_weights(z_t, z_s, onehot, valid)
    moved = akd.mix_and_weights(z_t + a_t, z_s + a_s, onehot, valid)
    same = akd.mix_and_weights(z_t + a_t, z_s + a_t, onehot, valid)  # one offset for both
    loss = akd.stage_loss(z_t, z_s, onehot, valid)["akd"]
    moved_loss = akd.stage_loss(z_t + a_t, z_s + a_s, onehot, valid)["akd"]
    if form == "softmax":
        for m in (moved, same):
            assert torch.allclose(m["s_t"], base["s_t"], rtol=1e-4, atol=1e-4)
            assert torch.allclose(m["w"], base["w"], rtol=1e-4, atol=1e-4)
        assert moved_loss.item() == pytest.approx(loss.item(), rel=1e-4)
    else:  # the literal form reads the offset: the test can fail
        assert (moved["s_t"] - base["s_t"]).abs().max() > 0.1
        assert (same["w"] - base["w"]).abs().max() > 0.1


def test_weighted_soft_loss_means_over_valid_pixels():
    terms = torch.tensor([[1.0, 2.0, 100.0], [3.0, 4.0, 100.0]]).reshape(1, 2, 1, 3)
    w = torch.tensor([[0.5, 1.0, 1.0], [1.5, 1.0, 1.0]]).reshape(1, 2, 1, 3)
    valid = torch.tensor([[[True, True, False]]])
    assert weighted_soft_loss(terms, w, valid).item() == pytest.approx((0.5 + 4.5 + 2 + 4) / 2)


def test_student_gradient_treats_hybrid_and_weights_as_constants():
    torch.manual_seed(0)
    akd = HeteroAKD(2, [1], [1], [0], [0], tau=2.0, weight_axis="class", kl_form="binary", reliability="sigmoid")
    target = torch.tensor([[[0, 1, -1]]])
    onehot, valid, _ = aligned_target(target, 2, (1, 3))
    z_t = lmap([3.0, -3.0], [2.0, -2.0], [0.0, 0.0]).requires_grad_(True)
    z_s = lmap([-1.0, 1.0], [-1.0, 1.0], [5.0, 5.0]).requires_grad_(True)
    out = akd.stage_loss(z_t, z_s, onehot, valid)
    out["akd"].backward()
    assert z_t.grad is None
    # d/ds tau^2 KL(Bern(sig(h/tau)) || Bern(sig(s/tau))) = tau (sig(s/tau) - sig(h/tau)), times W / n_valid
    h_t, h_s = reliability(z_t.detach(), onehot, valid, "sigmoid"), reliability(z_s.detach(), onehot, valid, "sigmoid")
    _, z_h = knowledge_mix(z_t, z_s, h_t, h_s, 1e-6)
    w = knowledge_weights(h_s, reliability(z_h, onehot, valid, "sigmoid"), valid, "class")
    for p in range(2):
        for c in range(2):
            s, h = z_s[0, c, 0, p].item(), z_h[0, c, 0, p].item()
            expected = w[0, c, 0, p].item() * 2.0 * (sigmoid(s / 2) - sigmoid(h / 2)) / 2
            assert z_s.grad[0, c, 0, p].item() == pytest.approx(expected, abs=1e-6)
    assert z_s.grad[0, :, 0, 2].tolist() == [0.0, 0.0]  # the ignored pixel


def _outputs(feats, logits):
    return {"features": feats, "logits": logits, "decoder": feats[-1]}


def test_heteroakd_total_and_ablation_reduces_to_projected_kd():
    torch.manual_seed(0)
    target = torch.tensor([[[0, 1, 2, -1], [2, 1, 0, 0], [1, 1, -1, 2], [0, 2, 2, 1]]])
    t_feat = [torch.randn(1, 5, 4, 4), torch.randn(1, 6, 2, 2)]
    s_feat = [torch.randn(1, 4, 4, 4, requires_grad=True)]
    t_out, s_out = _outputs(t_feat, torch.randn(1, 3, 4, 4)), _outputs(s_feat, torch.randn(1, 3, 4, 4, requires_grad=True))
    akd = HeteroAKD(3, [6], [4], [-1], [0], align_stride=1, kmm=False, kem=False, lambda_kd=0.1,
                    kl_form="binary", reliability="sigmoid", projector_supervision="both")
    terms = akd(s_out, t_out, target)
    total = terms["ce"] + 0.1 * terms["kd"] + terms["akd"] + terms["proj"]
    assert terms["loss"].item() == pytest.approx(total.item(), abs=1e-6)
    assert terms["ce"].item() == pytest.approx(ce_loss(s_out["logits"], target).item())
    assert terms["kd"].item() == pytest.approx(kd_loss(s_out["logits"], t_out["logits"]).item())
    # without KMM / KEM: the binary KL from the (upsampled) teacher projection, mean over labelled pixels
    z_t = torch.nn.functional.interpolate(akd.proj_t[0](t_feat[1]), size=(4, 4), mode="bilinear")
    z_s = akd.proj_s[0](s_feat[0])
    p, q = torch.sigmoid(z_t), torch.sigmoid(z_s)
    kl = (p * (p / q).log() + (1 - p) * ((1 - p) / (1 - q)).log()).sum(1)
    valid = target >= 0
    assert terms["akd"].item() == pytest.approx((kl[valid].sum() / valid.sum()).item(), abs=1e-5)
    # the teacher projector learns from its CE only: "none" leaves it without gradient
    terms["loss"].backward()
    assert akd.proj_t[0][0].weight.grad is not None and akd.proj_t[0][0].weight.grad.abs().sum() > 0
    akd2 = HeteroAKD(3, [6], [4], [-1], [0], align_stride=2, projector_supervision="none")
    akd2(s_out, t_out, target)["loss"].backward()
    assert akd2.proj_t[0][0].weight.grad is None
    assert akd2.proj_s[0][0].weight.grad.abs().sum() > 0


def test_projector_kinds():
    akd = HeteroAKD(3, [4], [5], [0], [0], projector="conv_bn_relu")
    for proj in (akd.proj_t[0], akd.proj_s[0]):
        assert [type(m) for m in proj] == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU]
        assert proj[0].bias is None and proj[0].kernel_size == (1, 1)
    assert (akd.proj_s[0](torch.randn(2, 5, 3, 3)) >= 0).all()
    with pytest.raises(ValueError, match="kd.heteroakd.projector='mlp': choose one of conv, conv_bn_relu"):
        HeteroAKD(3, [4], [5], [0], [0], projector="mlp")


def test_projector_relu_comes_before_the_conv():
    akd = HeteroAKD(3, [4], [5], [0], [0], projector_relu=True, projector="conv")
    for proj in (akd.proj_t[0], akd.proj_s[0]):
        assert [type(m) for m in proj] == [nn.ReLU, nn.Conv2d]
    conv = akd.proj_t[0][1]
    out = akd.proj_t[0](-torch.rand(1, 4, 2, 2))  # negative features are zeroed: only the bias is left
    assert torch.allclose(out, conv.bias.reshape(1, 3, 1, 1).expand(1, 3, 2, 2))
    assert [type(m) for m in HeteroAKD(3, [4], [5], [0], [0], projector="conv").proj_t[0]] == [nn.Conv2d]
    with_bn = HeteroAKD(3, [4], [5], [0], [0], projector_relu=True).proj_t[0]
    assert [type(m) for m in with_bn] == [nn.ReLU, nn.Conv2d, nn.BatchNorm2d, nn.ReLU]


def test_default_projector_is_conv_bn_relu_in_class_and_config():
    """The measured default (README "Studies against the same teachers"): BatchNorm in the projector."""
    from lhl.config.distill_schema import HeteroAKDConfig

    assert [type(m) for m in HeteroAKD(3, [4], [5], [0], [0]).proj_s[0]] == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU]
    assert HeteroAKDConfig().projector == "conv_bn_relu"


def test_heteroakd_rejects_bad_switches():
    with pytest.raises(ValueError, match="same length"):
        HeteroAKD(3, [4], [4, 8], [-1], [-2, -1])
    with pytest.raises(ValueError, match="kl_form"):
        HeteroAKD(3, [4], [4], [-1], [-1], kl_form="js")
    with pytest.raises(ValueError, match="kd.heteroakd.reliability='bce'"):
        HeteroAKD(3, [4], [4], [-1], [-1], reliability="bce")


def test_ce_ignores_unlabelled_pixels():
    logits = lmap([0.0, 0.0], [9.0, -9.0], [0.0, math.log(3)])
    target = torch.tensor([[[0, -1, 1]]])
    assert ce_loss(logits, target).item() == pytest.approx((math.log(2) + math.log(4 / 3)) / 2, abs=1e-6)


def test_logit_kd_hand_values_and_temperature():
    s = lmap([0.0, 0.0])
    assert kd_loss(s, lmap([math.log(3), 0.0])).item() == pytest.approx(KL_75_50, abs=1e-6)
    assert kd_loss(s, lmap([2 * math.log(3), 0.0]), tau=2.0).item() == pytest.approx(4 * KL_75_50, abs=1e-6)
    # unmasked: the mean over pixels of KL((.75, .25) || (.5, .5)) and KL((.5, .5) || (.75, .25))
    two_s, two_t = lmap([0.0, 0.0], [math.log(3), 0.0]), lmap([math.log(3), 0.0], [0.0, 0.0])
    expected = (KL_75_50 + 0.5 * math.log(4 / 3)) / 2
    assert kd_loss(two_s, two_t).item() == pytest.approx(expected, abs=1e-6)
    valid = torch.tensor([[[True, False]]])
    two = lmap([0.0, 0.0], [0.0, 0.0])
    assert kd_loss(two, lmap([math.log(3), 0.0], [9.0, -9.0]), valid=valid).item() == pytest.approx(KL_75_50, abs=1e-6)


def test_cwd_softmax_over_space_per_channel():
    # channel 0 spreads (.75, .25) over two pixels vs the student's (.5, .5); channel 1 agrees
    t = torch.tensor([[math.log(3), 0.0], [1.0, 1.0]]).reshape(1, 2, 1, 2)
    s = torch.zeros(1, 2, 1, 2)
    assert cwd_loss(s, t, tau=1.0).item() == pytest.approx(KL_75_50 / 2, abs=1e-6)
    assert cwd_loss(s, 2 * t, tau=2.0).item() == pytest.approx(4 * KL_75_50 / 2, abs=1e-6)
    # B = 2: image 1's channel 0 is the reverse, (.5, .5) vs (.75, .25); the mean is over B x C
    t2 = torch.cat([t, torch.tensor([[0.0, 0.0], [2.0, 2.0]]).reshape(1, 2, 1, 2)])
    s2 = torch.cat([s, torch.tensor([[math.log(3), 0.0], [0.0, 0.0]]).reshape(1, 2, 1, 2)])
    assert cwd_loss(s2, t2, tau=1.0).item() == pytest.approx((KL_75_50 + 0.5 * math.log(4 / 3)) / 4, abs=1e-6)
    s.requires_grad_(True)
    t.requires_grad_(True)
    cwd_loss(s, t).backward()
    assert t.grad is None
