"""Each phase's epochs: train.epochs, train.task_epochs for the phases that train those tasks, and
train.epoch_scale (lhl.config.epochs), checked at config time and obeyed by the trainer."""
from __future__ import annotations

import pytest
import torch

from conftest import tiny_overrides
from lhl.config import ConfigError, load_config
from lhl.config.epochs import phase_epochs
from lhl.runs.identity import run_folder_of
from lhl.engine.runner import run


def test_phase_epochs_by_hand():
    train = {"epochs": 10, "task_epochs": {"depth": 8, "normal": 14}}
    assert [phase_epochs(train, [t]) for t in ("semantic", "depth", "normal")] == [10, 8, 14]
    assert phase_epochs(train, ["semantic", "depth", "normal"]) == 14  # joint: the most of its tasks'
    assert phase_epochs(train, ["semantic", "depth"]) == 8  # a task named in task_epochs decides
    assert phase_epochs(dict(train, epoch_scale=2), ["depth"]) == 16
    assert phase_epochs({"epochs": 3, "task_epochs": None}, ["normal"]) == 3


def test_the_preset_gives_normals_and_depth_their_own_epochs():
    cfg = load_config([], ["seq=synthetic_s1", "method=finetune"])
    assert [phase_epochs(cfg.train, [t]) for t in cfg.sequence.tasks] == [10, 8, 14]
    # a sequence cut down to fewer tasks keeps the preset's entries for the others, unused
    assert load_config([], ["seq=synthetic_s1", "sequence.tasks=[semantic,depth]"]).train.task_epochs.normal == 14


@pytest.mark.parametrize("override, message", [
    ("train.task_epochs.normall=3", r"train.task_epochs.normall: 'normall' is no task of dataset 'synthetic'"),
    ("train.task_epochs.depth=0", r"train.task_epochs.depth=0: give a whole number of epochs >= 1"),
    ("train.epoch_scale=0", r"train.epoch_scale=0: give a whole number >= 1"),
])
def test_bad_epochs_fail_at_config_time_naming_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config([], ["seq=synthetic_s1", override])


def test_each_phase_trains_its_own_epochs_scaled(tmp_path, synth_cache):
    """24 views, two phases of 12 at batch 4: 3 steps an epoch. Semantic 1 epoch and depth 2, both
    scaled by 2: 6 steps, then 12 more (the global step each phase's checkpoint records)."""
    cfg = load_config([], tiny_overrides(tmp_path, synth_cache, **{
        "train.max_steps": -1, "train.task_epochs": "{depth: 2}", "train.epoch_scale": 2,
        "sequence.tasks": "[semantic,depth]", "eval.gallery_samples": 0, "logger": "none"}))
    run(cfg)
    folder = run_folder_of(cfg)
    steps = [torch.load(folder.phase_ckpt(p), map_location="cpu", weights_only=False)["global_step"] for p in (0, 1)]
    assert steps == [6, 18]
