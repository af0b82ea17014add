"""A non-finite loss stops the run naming the step, the phase and the term, before any checkpoint
holds the weights it produced: the previous phase's `phase.ckpt` and the phase's last good
`last.ckpt` are kept, and nothing newer is written."""
from __future__ import annotations

import pytest
import torch

from conftest import tiny_overrides
from lhl.config import load_config
from lhl.runs.identity import run_folder_of
from lhl.engine.nonfinite import NonFiniteLoss, NonFiniteWatch
from lhl.engine.runner import run
from lhl.methods.base import Method
from lhl.runs.results import Results


def test_watch_keeps_the_first_bad_step_and_term():
    w = NonFiniteWatch()
    one = torch.tensor(1.0)
    w.observe({"semantic": one, "depth": one}, 2 * one, 0)
    w.check(0, "X", "here")  # all finite: nothing
    w.observe({"semantic": one, "depth": torch.tensor(float("inf"))}, torch.tensor(float("inf")), 1)
    w.observe({"semantic": torch.tensor(float("nan")), "depth": one}, torch.tensor(float("nan")), 2)
    assert w.first_step() == 1
    with pytest.raises(NonFiniteLoss, match=r"phase 3, step 1 \(global step 11.*loss/depth went non-finite"):
        w.check(3, "X", "here", step_offset=10)


def test_nan_in_phase_two_stops_before_a_checkpoint_holds_it(tmp_path, synth_cache, monkeypatch):
    """NaN from phase 1's step 3 (0-based) on; checks on logged steps are off (every 50 steps), so it
    is found at the step-4 `last.ckpt`: not written, the step-2 one kept, phase 0's intact."""
    real = Method.loss_terms

    def poisoned(self, step):
        terms, diag = real(self, step)
        if step.phase.index == 1 and poisoned.steps.setdefault(1, 0) >= 3:
            terms = {k: v * float("nan") if k == "depth" else v for k, v in terms.items()}
        if step.phase.index == 1:
            poisoned.steps[1] += 1
        return terms, diag

    poisoned.steps = {}
    monkeypatch.setattr(Method, "loss_terms", poisoned)
    args = tiny_overrides(tmp_path, synth_cache, **{
        "sequence.tasks": "[semantic,depth]", "method": "finetune", "train.max_steps": 6, "train.epochs": 2,
        "train.checkpoint_every_steps": 2, "train.log_every_n_steps": 50, "eval.gallery_samples": 0})
    with pytest.raises(NonFiniteLoss) as err:
        run(load_config([], args))
    msg = str(err.value)
    root = run_folder_of(load_config([], args)).root
    assert "phase 1, step 3" in msg and "loss/depth went non-finite" in msg and "loss/semantic" not in msg.split("(")[2]
    assert str(root / "phase_0" / "phase.ckpt") in msg and str(root / "phase_1" / "last.ckpt") in msg
    last = torch.load(root / "phase_1" / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["global_step"] == 2  # the step-4 checkpoint was refused
    assert all(torch.isfinite(v).all() for v in last["state_dict"].values() if v.is_floating_point())
    assert not (root / "phase_1" / "phase.ckpt").exists() and not list(root.rglob("*.tmp"))
    assert [p["phase"] for p in Results.load(root).phases] == [0]
