"""Faithful HAD and the current-task losses against the official release's own outputs.

The golden file (inputs, losses and gradients of the release's weight_fit / model_fit) is read from
$LHL_GOLDEN, else ../shared/golden/had_reference.pt; it is never copied into the repository.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from conftest import method_loss
import torch.nn.functional as F

from lhl.losses import HADConfig, had_term
from lhl.methods.had import HAD
from lhl.tasks import build_task

GOLDEN = Path(
    os.environ.get("LHL_GOLDEN")
    or Path(__file__).resolve().parents[2] / "shared" / "golden" / "had_reference.pt"
)


def _cases():
    if not GOLDEN.is_file():
        reason = f"golden file {GOLDEN} is absent (set LHL_GOLDEN to its path)"
        return [pytest.param(None, id="golden-absent", marks=pytest.mark.skip(reason=reason))]
    cases = torch.load(GOLDEN, weights_only=False)["cases"]
    return [pytest.param(c, id=c["name"]) for c in cases if c["name"].startswith(("had_", "task_"))]


def _student(case):
    """The student tensor that carries the gradient, and its activated prediction."""
    if case["task"] == "semantic":
        x = case["student_logits"].clone().requires_grad_(True)
        return x, F.log_softmax(x, dim=1), case["grad_logits"]
    x = case["student_raw"].clone().requires_grad_(True)
    pred = F.normalize(x, p=2, dim=1) if case["task"] == "normal" else x
    return x, pred, case["grad_raw"]


def _channels(case):
    key = "student_logits" if case["task"] == "semantic" else "student_raw"
    return case[key].shape[1]


@pytest.mark.parametrize("case", _cases())
def test_golden_case(case):
    x, pred, grad = _student(case)
    task = build_task(case["task"], case["task"], _channels(case))
    if case["name"].startswith("task_"):
        loss = task.loss(pred, case["label"])
    else:
        args = case["args"]
        options = HAD.Options(
            mode="faithful",
            new=args["new"],
            scalar_val=args["scalar_val"],
            num_interval=args["num_interval"],
            sel_max=args["sel_max"],
        )
        teacher = case["teacher_logits"] if case["task"] == "semantic" else case["teacher_out"]
        if case["task"] == "semantic":
            assert torch.equal(task.pseudo_label(teacher), case["pseudo_label"])
        loss, _ = had_term(task, pred, task.pseudo_label(teacher), options.config())

        method = HAD(options, {"cur": build_task("depth", "cur", 1), "old": task})
        cur = torch.zeros(pred.shape[0], 1, *pred.shape[2:])
        total, logs = method_loss(
            method, {"cur": cur, "old": pred}, {"old": teacher}, {"cur": cur + 1.0}, ["cur"], ["old"]
        )
        torch.testing.assert_close(total, 1.0 + args["new"] * case["loss"], rtol=1e-5, atol=0)
        torch.testing.assert_close(logs["loss/had/old"], args["new"] * case["loss"], rtol=1e-5, atol=0)
    torch.testing.assert_close(loss.detach(), case["loss"], rtol=1e-5, atol=0)
    loss.backward()
    torch.testing.assert_close(x.grad, grad, rtol=0, atol=1e-6)


def test_faithful_is_every_mend_off():
    cfg = HAD.Options(mode="faithful").config()
    assert cfg == HADConfig()
