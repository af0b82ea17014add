"""HAD takes each task type's own validity: scalar NaN labels, normals by |n|, and unknown kinds refused."""
from __future__ import annotations

import math

import pytest
import torch

from lhl.losses import HAD_TERMS, HADConfig, had_term
from lhl.tasks import TaskSpec, build_task

FIXED = HADConfig.for_mode("fixed")


def test_scalar_nan_pixels_are_ignored_and_zero_is_a_value():
    task = build_task("scalar", "edge", 1)
    pred = torch.tensor([1.0, 2.0, 3.0, 4.0]).view(1, 1, 1, 4).requires_grad_(True)
    pseudo = torch.tensor([0.0, float("nan"), 3.0, 2.0]).view(1, 1, 1, 4)
    # plain term: mean |error| over the valid pixels 0, 2, 3 (errors 1, 0, 2); 0 is a valid label
    term, parts = had_term(task, pred, pseudo, FIXED.replace(num_interval=1.0))
    assert parts["db"].item() == pytest.approx(1.0)
    # DB by pseudo-label value: above 0.5 {3, 2} (mean error 1), below {0} (error 1); NaN in neither
    term, parts = had_term(task, pred, pseudo, FIXED)
    assert parts["db"].item() == pytest.approx(1.0)
    term.backward()
    assert torch.isfinite(term) and torch.isfinite(pred.grad).all()
    assert pred.grad[0, 0, 0, 1] == 0.0
    moved = pred.detach().clone()
    moved[0, 0, 0, 1] = 100.0
    assert had_term(task, moved, pseudo, FIXED)[0].item() == pytest.approx(term.item())


def test_normal_whose_components_sum_to_zero_is_valid_in_fixed_mode():
    task = build_task("normal", "normal", 3)
    s = 1 / math.sqrt(2)
    pseudo = torch.tensor([[s, 0.0], [-s, 0.0], [0.0, 1.0]]).view(1, 3, 1, 2)  # pixel 0 sums to 0
    pred = torch.tensor([[0.0, 0.0], [0.0, 0.0], [1.0, 1.0]]).view(1, 3, 1, 2)  # cos 0, then 1
    assert task.valid_mask(pseudo).all()
    _, parts = had_term(task, pred, pseudo, FIXED.replace(num_interval=1.0))
    assert parts["db"].item() == pytest.approx(0.5)  # (1 + 0) / 2 valid pixels
    # the release's signed-sum mask drops pixel 0 and its mean still counts it as loss 1
    _, release = had_term(task, pred, pseudo, HADConfig(num_interval=1.0))
    assert release["db"].item() == pytest.approx((1.0 + (1 - 1 / 3)) / 1)


class _Curvature(TaskSpec):
    kind = "curvature"


def test_unknown_kind_is_refused_with_the_supported_ones():
    task = _Curvature("curv", 2)
    with pytest.raises(ValueError, match="task 'curv' of kind 'curvature'.*depth, normal, scalar, semantic"):
        had_term(task, torch.zeros(1, 2, 4, 4), torch.zeros(1, 2, 4, 4), FIXED)
    assert sorted(HAD_TERMS) == ["depth", "normal", "scalar", "semantic"]
