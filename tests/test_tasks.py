"""Each task type owns its output structure: validity, per-pixel loss, label transforms, examples."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lhl.tasks import TASKS, LabelFacts, build_task
from lhl.tasks.normal import NormalMetric

NAN = float("nan")
S = 1 / math.sqrt(2)


def pixels(*values, channels=1, dtype=torch.float32):
    """One image, one row: [1, C, 1, W] from per-pixel tuples (or [1, 1, W] for plain values)."""
    t = torch.tensor(values, dtype=dtype)
    return t.T.reshape(1, channels, 1, -1) if channels > 1 else t.view(1, 1, -1)


# --- valid_mask and pixel_loss ------------------------------------------------------------------
def test_semantic_valid_is_a_class_id_and_loss_is_masked_nll():
    task = build_task("semantic", "seg", 3)
    label = pixels(0, 2, -1, 3, 255, dtype=torch.long)
    assert task.valid_mask(label).tolist() == [[[True, True, False, False, False]]]
    log_probs = torch.full((1, 3, 1, 5), -math.log(3))
    loss, valid = task.pixel_loss(log_probs, label)
    torch.testing.assert_close(loss, torch.tensor([[[math.log(3)] * 2 + [0.0] * 3]]))
    assert torch.equal(valid, task.valid_mask(label))


def test_depth_valid_is_non_zero_and_loss_is_l1():
    task = build_task("depth", "depth", 1)
    label = pixels(2.0, 0.0, -1.0).unsqueeze(1)
    assert task.valid_mask(label).tolist() == [[[True, False, True]]]
    loss, _ = task.pixel_loss(torch.ones(1, 1, 1, 3), label)
    assert loss.tolist() == [[[1.0, 0.0, 2.0]]]


def test_normal_valid_is_a_non_zero_vector_even_if_it_sums_to_zero():
    task = build_task("normal", "normal", 3)
    label = pixels((0.0, 0.0, 0.0), (S, -S, 0.0), (0.0, 0.0, 1.0), channels=3)
    assert task.valid_mask(label).tolist() == [[[False, True, True]]]
    pred = pixels((0.0, 0.0, 1.0), (0.0, 0.0, 1.0), (0.0, 0.0, 1.0), channels=3)
    loss, _ = task.pixel_loss(pred, label)
    assert loss.tolist() == [[[0.0, 1.0, 0.0]]]  # 1 - cos, zero where invalid


def test_scalar_valid_is_no_nan_and_zero_is_a_value():
    task = build_task("scalar", "edge", 2)
    label = pixels((0.0, 0.0), (1.0, NAN), (3.0, 1.0), channels=2)
    assert task.valid_mask(label).tolist() == [[[True, False, True]]]
    pred = pixels((1.0, 2.0), (5.0, 5.0), (3.0, 3.0), channels=2).requires_grad_(True)
    loss, _ = task.pixel_loss(pred, label)
    assert loss.tolist() == [[[3.0, 0.0, 2.0]]]
    task.loss(pred, label).backward()
    assert torch.isfinite(pred.grad).all() and pred.grad[0, :, 0, 1].eq(0).all()


def test_global_normal_metric_uses_the_task_rule_and_mtan_the_release_mask():
    label = pixels((S, -S, 0.0), (0.0, 0.0, 1.0), channels=3)
    pred = pixels((0.0, 0.0, 1.0), (0.0, 0.0, 1.0), channels=3)
    values = {}
    for reduction in ("global", "mtan"):
        m = NormalMetric(reduction=reduction)
        m.update(pred, label)
        values[reduction] = m.compute()["mean"].item()
    assert values["global"] == pytest.approx(45.0)  # (90 + 0) / 2 valid pixels
    assert values["mtan"] == pytest.approx(0.0)  # the release drops the vector that sums to 0


# --- zoom_label and flip_label ------------------------------------------------------------------
@pytest.mark.parametrize("inverse, expected", [(False, [2.0, 1.0]), (True, [8.0, 16.0])])
def test_depth_zoom_divides_metric_depth_and_multiplies_inverse_depth(inverse, expected):
    task = build_task("depth", "depth", 1)
    facts = LabelFacts(depth_inverse=inverse)
    out = task.zoom_label(torch.full((2, 1, 2, 2), 4.0), torch.tensor([2.0, 4.0]), facts)
    assert out[:, 0, 0, 0].tolist() == expected


@pytest.mark.parametrize("kind, channels", [("semantic", 3), ("normal", 3), ("scalar", 1)])
def test_zoom_keeps_other_values(kind, channels):
    task = build_task(kind, kind, channels)
    label = task.example_label(2, 3, 4, torch.Generator().manual_seed(0))
    assert torch.equal(task.zoom_label(label, torch.tensor([1.5, 2.0]), LabelFacts()), label)


def test_semantic_flip_mirrors_only_flagged_samples():
    task = build_task("semantic", "seg", 3)
    label = torch.tensor([[[0, 1, 2]], [[2, 1, 0]]])
    out = task.flip_label(label, torch.tensor([True, False]), LabelFacts())
    assert out.tolist() == [[[2, 1, 0]], [[2, 1, 0]]]


@pytest.mark.parametrize("x", [0, 2])
def test_normal_flip_mirrors_and_negates_the_x_channel(x):
    task = build_task("normal", "normal", 3)
    label = torch.arange(1.0, 13.0).view(2, 3, 1, 2)
    out = task.flip_label(label, torch.tensor([True, False]), LabelFacts(normal_x_channel=x))
    expected = label.clone()
    expected[0] = label[0].flip(-1)
    expected[0, x] = -expected[0, x]
    assert torch.equal(out, expected)


# --- example_label and label_from_array ---------------------------------------------------------
@pytest.mark.parametrize("kind, channels, shape, dtype", [
    ("semantic", 4, (2, 5, 6), torch.int64), ("depth", 1, (2, 1, 5, 6), torch.float32),
    ("normal", 3, (2, 3, 5, 6), torch.float32), ("scalar", 2, (2, 2, 5, 6), torch.float32),
])
def test_example_label_is_valid_everywhere_and_reproducible(kind, channels, shape, dtype):
    task = build_task(kind, kind, channels)
    label = task.example_label(2, 5, 6, torch.Generator().manual_seed(1))
    assert label.shape == shape and label.dtype == dtype and task.valid_mask(label).all()
    assert torch.equal(label, task.example_label(2, 5, 6, torch.Generator().manual_seed(1)))


def test_label_from_array_reads_the_mtan_layout():
    sem = TASKS.get("semantic").label_from_array(np.array([[0.0, 2.4], [-1.0, -3.0]], np.float32))
    assert sem.dtype == torch.int64 and sem.tolist() == [[0, 2], [-1, -1]]
    depth = TASKS.get("depth").label_from_array(np.arange(4, dtype=np.float64).reshape(2, 2, 1))
    assert depth.shape == (1, 2, 2) and depth.dtype == torch.float32 and depth[0, 1, 0] == 2.0
    normal = TASKS.get("normal").label_from_array(np.arange(12, dtype=np.float32).reshape(2, 2, 3))
    assert normal.shape == (3, 2, 2) and normal[2, 0, 1] == 5.0
    scalar = TASKS.get("scalar").label_from_array(np.ones((2, 3), np.float32))
    assert scalar.shape == (1, 2, 3)


@pytest.mark.parametrize("kind", list(TASKS))
def test_every_task_type_implements_the_interface(kind):
    task = build_task(kind, kind, 3 if kind != "depth" else 1)
    label = task.example_label(1, 4, 4, torch.Generator().manual_seed(0))
    pred = task.activate(torch.randn(1, task.channels, 4, 4))
    loss, valid = task.pixel_loss(pred, label)
    assert loss.shape == valid.shape == (1, 4, 4) and valid.dtype == torch.bool
    assert torch.isfinite(task.loss(pred, label))
    assert task.pseudo_label(pred).shape[-2:] == (4, 4)
    assert task.flip_label(label, torch.tensor([True]), LabelFacts()).shape == label.shape
    assert task.colourise(label[0], is_label=True).shape == (4, 4, 3)
    m = task.metric()
    m.update(pred, label)
    assert set(m.compute()) == set(task.metric_directions)
