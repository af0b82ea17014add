"""lwf: current-task loss plus `new` times the plain pseudo-label loss of every old task."""
from __future__ import annotations

import math

import pytest
import torch
from conftest import method_loss
import torch.nn.functional as F

from lhl.methods.lwf import LwF
from lhl.core.registry import METHODS
from lhl.tasks import build_task


def _tasks():
    return {
        "seg": build_task("semantic", "seg", 2),
        "dep": build_task("depth", "dep", 1),
        "nor": build_task("normal", "nor", 3),
    }


def _inputs():
    seg_logits = torch.tensor([[0.0, math.log(3.0)], [0.0, 0.0]]).view(1, 2, 1, 2)  # [C, W]
    teacher_seg = torch.tensor([[0.0, 0.0], [1.0, 1.0]]).view(1, 2, 1, 2)  # argmax: class 1, 1
    dep = torch.tensor([1.0, 2.0]).view(1, 1, 1, 2).requires_grad_(True)
    teacher_dep = torch.tensor([2.0, 4.0]).view(1, 1, 1, 2).requires_grad_(True)
    nor = torch.tensor([[0.0, 1.0], [0.0, 0.0], [1.0, 0.0]]).view(1, 3, 1, 2)
    nor_label = torch.tensor([[0.0, 0.0], [0.0, 0.0], [1.0, 0.0]]).view(1, 3, 1, 2)
    student = {"seg": F.log_softmax(seg_logits, dim=1), "dep": dep, "nor": nor}
    teacher = {"seg": F.log_softmax(teacher_seg, dim=1), "dep": teacher_dep}
    return student, teacher, {"nor": nor_label}


def test_loss_is_current_plus_new_times_pseudo_label_losses():
    student, teacher, batch = _inputs()
    method = LwF(LwF.Options(), _tasks())
    total, logs = method_loss(method, student, teacher, batch, ["nor"], ["seg", "dep"])
    # current: normal pred == label at the one valid pixel -> 0
    # depth: |1 - 2| and |2 - 4| -> 1.5; semantic: -log 0.5 and -log 0.25 against class 1
    seg = (math.log(2.0) + math.log(4.0)) / 2
    assert logs["loss/nor"].item() == pytest.approx(0.0, abs=1e-7)
    assert logs["loss/lwf/dep"].item() == pytest.approx(3.0 * 1.5)  # weighted by new, as it entered the loss
    assert logs["loss/lwf/seg"].item() == pytest.approx(3.0 * seg, rel=1e-6)
    assert total.item() == pytest.approx(3.0 * (1.5 + seg), rel=1e-6)
    total.backward()
    assert teacher["dep"].grad is None
    torch.testing.assert_close(student["dep"].grad, torch.full((1, 1, 1, 2), -1.5))


def test_weight_and_first_phase():
    student, teacher, batch = _inputs()
    half = LwF(LwF.Options(new=0.5), _tasks())
    total, _ = method_loss(half, student, teacher, batch, ["nor"], ["dep"])
    assert total.item() == pytest.approx(0.75)
    total, logs = method_loss(half, student, None, batch, ["nor"], [])
    assert total.item() == pytest.approx(0.0, abs=1e-7) and set(logs) == {"loss/nor"}


def test_options_and_registry():
    assert METHODS.get("lwf") is LwF and LwF.uses_teacher
    for bad in (-1.0, "3", True):
        with pytest.raises(ValueError, match="method.new"):
            LwF.Options(new=bad)
