"""HAD's fixed mode: one hand-computed test per mend (release value beside the mended one), plus
the options, the method's loss assembly and its logs."""
from __future__ import annotations

import math

import pytest
import torch
from conftest import method_loss
import torch.nn.functional as F

from lhl.losses import (
    MENDS,
    HADConfig,
    class_balanced_loss,
    class_geometric_means,
    edge_mask,
    group_balanced_loss,
    had_term,
    normal_had,
    normal_sg,
    regression_had,
    regression_sg,
    semantic_sg,
    sobel_magnitude,
)
from lhl.methods.had import HAD
from lhl.core.registry import METHODS
from lhl.tasks import build_task

FAITHFUL = HADConfig()
DEPTH = build_task("depth", "depth", 1)
NORMAL = build_task("normal", "normal", 3)


def row(*values, dtype=torch.float32):
    """A [1, 1, W] map (one image, one row)."""
    return torch.tensor(values, dtype=dtype).view(1, 1, -1)


# --- modes and options --------------------------------------------------------------------------
def test_modes_resolve_every_mend_and_overrides_win():
    fixed = HADConfig.for_mode("fixed")
    assert all(getattr(fixed, m) for m in MENDS)
    assert not any(getattr(HADConfig.for_mode("faithful"), m) for m in MENDS)
    cfg = HAD.Options(mode="fixed", mends={"replicate_padding": False}, scalar_val=0.8).config()
    assert not cfg.replicate_padding and cfg.full_cosine and cfg.scalar_val == 0.8
    assert HAD.Options(mode="faithful", mends={"full_cosine": True}).config().full_cosine
    assert HAD.Options().mode == "fixed"


@pytest.mark.parametrize(
    "values, message",
    [
        ({"mode": "papers"}, "method.mode"),
        ({"sel_max": 3}, "method.sel_max"),
        ({"sel_max": True}, "method.sel_max"),
        ({"scalar_val": 1.5}, "method.scalar_val"),
        ({"num_interval": "1"}, "method.num_interval"),
        ({"new": -1.0}, "method.new"),
        ({"mends": {"full_cosine": "yes"}}, "method.mends.full_cosine"),
        ({"mends": {"full_cosin": True}}, "did you mean 'full_cosine'"),
    ],
)
def test_invalid_options_are_named(values, message):
    with pytest.raises(ValueError, match=message):
        HAD.Options(**values)


def test_registered():
    assert METHODS.get("had") is HAD and HAD.uses_teacher


# --- exclude_absent_classes and class_weighted_mean (semantic DB) -------------------------------
def test_class_geometric_means_skip_zero_losses():
    loss = row(1.0, 4.0, 3.0, 0.0, 5.0)
    label = row(0, 0, 1, 1, 2, dtype=torch.long)
    valid = row(1, 1, 1, 1, 0, dtype=torch.bool)
    means, present = class_geometric_means(loss, label, valid, 4)
    torch.testing.assert_close(means, torch.tensor([2.0, 3.0, 0.0, 0.0]))
    assert present.tolist() == [True, True, False, False]


@pytest.mark.parametrize(
    "exclude, weighted, expected",
    [
        # release: softmax over [-2, -3, 0] (absent class 2 at G = 0), mean over the 3 classes
        (False, False, (2 * math.exp(-2) + 3 * math.exp(-3)) / (math.exp(-2) + math.exp(-3) + 1) / 3),
        # absent out of the softmax: weights softmax([-2, -3]), then / 2 present classes
        (True, False, (2 + 3 * math.exp(-1)) / (1 + math.exp(-1)) / 2),
        (True, True, (2 + 3 * math.exp(-1)) / (1 + math.exp(-1))),
    ],
)
def test_class_balanced_loss(exclude, weighted, expected):
    loss = row(1.0, 4.0, 3.0)  # class 0: G = sqrt(1 * 4) = 2; class 1: G = 3
    label = row(0, 0, 1, dtype=torch.long)
    cfg = FAITHFUL.replace(exclude_absent_classes=exclude, class_weighted_mean=weighted)
    got = class_balanced_loss(loss, label, torch.ones_like(label, dtype=torch.bool), 3, cfg)
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_class_balanced_weights_are_detached():
    loss = row(1.0, 4.0, 3.0).requires_grad_(True)
    label = row(0, 0, 1, dtype=torch.long)
    cfg = HADConfig.for_mode("fixed")
    class_balanced_loss(loss, label, torch.ones_like(label, dtype=torch.bool), 3, cfg).backward()
    w0, w1 = 1 / (1 + math.exp(-1)), math.exp(-1) / (1 + math.exp(-1))
    # dG0/dl = G0 / (n0 * l), dG1/dl1 = 1
    expected = torch.tensor([w0 * 2 / (2 * 1.0), w0 * 2 / (2 * 4.0), w1]).view(1, 1, 3)
    torch.testing.assert_close(loss.grad, expected)


def test_all_pixels_ignored_gives_zero_not_nan():
    log_probs = F.log_softmax(torch.randn(1, 4, 5, 5, requires_grad=True), dim=1)
    label = torch.full((1, 5, 5), -1)
    term, parts = had_term(build_task("semantic", "seg", 4), log_probs, label, HADConfig.for_mode("fixed"))
    assert term.item() == 0.0 and parts["db"].item() == 0.0


# --- sg_mean_over_kept (semantic SG) ------------------------------------------------------------
def test_semantic_sg_release_divides_by_all_pixels():
    nll = row(1.0, 2.0, 3.0, 4.0)
    keep = row(1, 0, 0, 1, dtype=torch.bool)
    valid = row(1, 1, 1, 1, dtype=torch.bool)
    assert semantic_sg(nll, valid, keep, False).item() == pytest.approx(5 / 4)
    assert semantic_sg(nll, valid, keep, True).item() == pytest.approx(5 / 2)
    ignored = row(1, 1, 1, 0, dtype=torch.bool)
    assert semantic_sg(nll * ignored, ignored, keep, True).item() == pytest.approx(1.0)


# --- per_image_depth_mask (depth SG) ------------------------------------------------------------
def test_depth_sg_release_broadcasts_masks_across_the_batch():
    err = torch.tensor([[[1.0, 2.0]], [[3.0, 4.0]]])
    keep = torch.tensor([[[True, True]], [[False, True]]])
    counted = err != 0
    # release: pixel 0: (1 + 3) * 1 mask, pixel 1: (2 + 4) * 2 masks; counts 2 * 1 + 2 * 2
    assert regression_sg(err, counted, keep, False).item() == pytest.approx(16 / 6)
    # per image: 1 + 2 + 4 over 3 kept pixels
    assert regression_sg(err, counted, keep, True).item() == pytest.approx(7 / 3)


# --- masked_normal_numerator, full_cosine (normal SG) -------------------------------------------
@pytest.mark.parametrize(
    "masked, full, expected",
    [
        (False, False, 1 - 2 / 3),  # all-pixel cosine 1 + 1, 3 non-zero channel entries kept
        (True, False, 1 - 1 / 3),
        (False, True, 1 - 2 / 1),
        (True, True, 1 - 1 / 1),
    ],
)
def test_normal_sg(masked, full, expected):
    s = 1 / math.sqrt(3)
    pred = torch.tensor([[s, 0.0], [s, 0.0], [s, 1.0]]).view(1, 3, 1, 2)
    prod = pred * pred  # target = pred: cosine 1 at both pixels; pixel 1 has two zero channels
    keep = row(1, 0, dtype=torch.bool)
    valid = row(1, 1, dtype=torch.bool)
    cfg = FAITHFUL.replace(masked_normal_numerator=masked, full_cosine=full)
    assert normal_sg(prod, valid, keep, cfg).item() == pytest.approx(expected, abs=1e-6)
    nothing = torch.zeros_like(keep)
    assert normal_sg(prod, valid, nothing, cfg).item() == 1.0


# --- full_cosine and count_valid_pixels (normal plain term) -------------------------------------
@pytest.mark.parametrize(
    "full, counted, expected",
    [
        (False, False, ((1 - 1 / 3) + (1 - 0.6 / 3) + 1) / 2),  # invalid pixel enters as 1
        (True, False, (0.0 + 0.4 + 1) / 2),
        (True, True, (0.0 + 0.4) / 2),
    ],
)
def test_normal_plain_term(full, counted, expected):
    pred = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.8, 1.0], [1.0, 0.6, 0.0]]).view(1, 3, 1, 3)
    target = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [1.0, 1.0, 0.0]]).view(1, 3, 1, 3)
    cfg = FAITHFUL.replace(num_interval=1.0, full_cosine=full, count_valid_pixels=counted)
    _, db, _, _ = normal_had(NORMAL, pred, target, cfg)
    assert db.item() == pytest.approx(expected, rel=1e-6)


# --- count_valid_pixels (depth) -----------------------------------------------------------------
def test_depth_plain_term_counts_valid_pixels():
    pred = torch.tensor([1.0, 3.0, 5.0]).view(1, 1, 1, 3)
    target = torch.tensor([1.0, 1.0, 0.0]).view(1, 1, 1, 3)  # exact hit, error 2, invalid
    _, db, _, _ = regression_had(DEPTH, pred, target, FAITHFUL.replace(num_interval=1.0))
    assert db.item() == pytest.approx(2.0)  # release: 2 / (1 non-zero error)
    cfg = FAITHFUL.replace(num_interval=1.0, count_valid_pixels=True)
    assert regression_had(DEPTH, pred, target, cfg)[1].item() == pytest.approx(1.0)


# --- mean_of_groups -----------------------------------------------------------------------------
def test_group_terms_summed_or_averaged():
    loss = row(1.0, 2.0, 3.0, 5.0)
    value = row(0.2, 0.4, 0.7, 0.9)
    assert group_balanced_loss(loss, value, 0.5, None, 0.0, False).item() == pytest.approx(4 + 1.5)
    assert group_balanced_loss(loss, value, 0.5, None, 0.0, True).item() == pytest.approx(2.75)
    # an empty group: the release adds 0 (depth) or 1 (normals); the mend averages the other only
    assert group_balanced_loss(loss, value, 2.0, None, 1.0, False).item() == pytest.approx(1 + 2.75)
    assert group_balanced_loss(loss, value, 2.0, None, 1.0, True).item() == pytest.approx(2.75)
    restrict = row(1, 0, 1, 1, dtype=torch.bool)
    assert group_balanced_loss(loss, value, 0.5, restrict, 0.0, True).item() == pytest.approx(2.5)


# --- group_by_pseudo_label ----------------------------------------------------------------------
@pytest.mark.parametrize(
    "by_label, expected",
    [(False, (0.6 + (0.7 + 0.2) / 2) / 2), (True, (0.7 + (0.2 + 0.6) / 2) / 2)],
)
def test_groups_split_by_student_or_pseudo_label(by_label, expected):
    pred = torch.tensor([0.2, 0.3, 0.8]).view(1, 1, 1, 3)
    target = torch.tensor([0.9, 0.1, 0.2]).view(1, 1, 1, 3)  # errors 0.7, 0.2, 0.6
    cfg = FAITHFUL.replace(mean_of_groups=True, group_by_pseudo_label=by_label)
    assert regression_had(DEPTH, pred, target, cfg)[1].item() == pytest.approx(expected, rel=1e-6)


# --- replicate_padding (Sobel) ------------------------------------------------------------------
def test_sobel_zero_padding_sees_the_border():
    ones = torch.ones(1, 3, 3)
    c, e = 3 * math.sqrt(2), 4.0
    expected = torch.tensor([[c, e, c], [e, 0.0, e], [c, e, c]]).unsqueeze(0)
    torch.testing.assert_close(sobel_magnitude(ones, replicate_padding=False), expected)
    torch.testing.assert_close(sobel_magnitude(ones, replicate_padding=True), torch.zeros(1, 3, 3))


def test_edge_mask_step_image():
    step = torch.tensor([0.0, 0.0, 1.0, 1.0]).repeat(4, 1).unsqueeze(0)
    kept = edge_mask(step, 0.9, 1, replicate_padding=True)
    assert kept[0].tolist() == [[False, True, True, False]] * 4
    border = edge_mask(step, 0.9, 1, replicate_padding=False)
    assert border[0, 1:3, 3].all()  # zero padding makes the right border an edge
    below = edge_mask(step, 0.9, 0, replicate_padding=True)
    assert torch.equal(below, ~kept)
    tails = edge_mask(step, 0.1, 2, replicate_padding=True)
    assert tails.all()
    assert not edge_mask(torch.ones(1, 4, 4), 0.9, 0, replicate_padding=True).any()


# --- fixed mode end to end ----------------------------------------------------------------------
@pytest.mark.parametrize("kind, channels", [("semantic", 5), ("depth", 1), ("normal", 3), ("scalar", 2)])
@pytest.mark.parametrize("sel_max", [0, 1, 2])
def test_fixed_term_is_finite_and_differentiable(kind, channels, sel_max):
    torch.manual_seed(0)
    raw = torch.randn(2, channels, 8, 8, requires_grad=True)
    other = torch.randn(2, channels, 8, 8)
    if kind == "semantic":
        pred, pseudo = F.log_softmax(raw, dim=1), other.argmax(dim=1)
    elif kind == "normal":
        pred, pseudo = F.normalize(raw, dim=1), F.normalize(other, dim=1)
    else:
        pred, pseudo = raw, other.abs()
    cfg = HADConfig.for_mode("fixed").replace(sel_max=sel_max, scalar_val=0.2 if sel_max == 2 else 0.5)
    term, parts = had_term(build_task(kind, kind, channels), pred, pseudo, cfg)
    term.backward()
    assert torch.isfinite(term) and torch.isfinite(raw.grad).all() and raw.grad.abs().sum() > 0
    assert term.item() == pytest.approx((parts["db"] + parts["sg"]).item() / 2, rel=1e-6)
    assert 0.0 < parts["edge_keep"].item() < 1.0


# --- the method -----------------------------------------------------------------------------------
def _tasks():
    return {"seg": build_task("semantic", "seg", 4), "dep": build_task("depth", "dep", 1)}


def test_first_phase_is_the_current_loss_only():
    method = HAD(HAD.Options(), _tasks())
    pred = torch.full((1, 1, 4, 4), 2.0)
    total, logs = method_loss(method, {"dep": pred}, None, {"dep": torch.ones_like(pred)}, ["dep"], [])
    assert total.item() == pytest.approx(1.0) and set(logs) == {"loss/dep"}


def test_training_loss_adds_new_times_the_old_terms_and_logs_them():
    torch.manual_seed(1)
    tasks = _tasks()
    method = HAD(HAD.Options(new=2.0), tasks)
    seg = F.log_softmax(torch.randn(2, 4, 8, 8), dim=1)
    teacher = {"seg": F.log_softmax(torch.randn(2, 4, 8, 8), dim=1)}
    dep = torch.zeros(2, 1, 8, 8)
    total, logs = method_loss(
        method, {"seg": seg, "dep": dep}, teacher, {"dep": dep + 0.5}, ["dep"], ["seg"]
    )
    term, parts = had_term(tasks["seg"], seg, teacher["seg"].argmax(dim=1), HADConfig.for_mode("fixed"))
    assert total.item() == pytest.approx(0.5 + 2.0 * term.item(), rel=1e-6)
    assert logs["loss/had/seg"].item() == pytest.approx(2.0 * term.item())  # as it entered the loss
    for key in ("db", "sg", "edge_keep"):
        assert logs[f"had/seg/{key}"].item() == pytest.approx(parts[key].item())
    assert {"loss/dep", "loss/had/seg"} <= set(logs)


@pytest.mark.parametrize("mode", ["faithful", "fixed"])
@pytest.mark.parametrize("kind, channels", [("semantic", 5), ("depth", 1), ("normal", 3)])
def test_runs_on_the_meta_device_so_nothing_reads_back_to_the_host(mode, kind, channels):
    raw = torch.randn(2, channels, 8, 8, device="meta", requires_grad=True)
    other = torch.randn(2, channels, 8, 8, device="meta")
    pred, pseudo = (F.log_softmax(raw, dim=1), other.argmax(dim=1)) if kind == "semantic" else (raw, other)
    term, parts = had_term(build_task(kind, kind, channels), pred, pseudo, HADConfig.for_mode(mode))
    term.backward()
    assert term.device.type == "meta" and all(v.device.type == "meta" for v in parts.values())
