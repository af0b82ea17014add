"""The README's promise: a new task type, dataset or method is one file plus its registry entry.

The plugin below is written to a file of its own, imported, and run end to end by the engine with
a method that distils (LwF) and one it defines, without touching anything else of lhl.
"""
from __future__ import annotations

import importlib.util
import sys

import pytest

from conftest import tiny_overrides
from lhl.config import load_config
from lhl.engine.runner import run
from lhl.runs.results import Results

PLUGIN = '''
"""A foreground task type (sigmoid, binary cross-entropy), a toy dataset offering it beside depth,
and a method adding a weight-decay term on the backbone."""
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset
from torchmetrics import Metric

from lhl.core.registry import DATASETS, METHODS, TASKS
from lhl.methods.base import Method, MethodOptions
from lhl.tasks.base import TaskSpec


class ForegroundIoU(Metric):
    full_state_update = False

    def __init__(self, **kw):
        super().__init__(**kw)
        self.add_state("inter", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("union", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, pred, target):
        valid = target[:, 0] >= 0
        p, t = (pred[:, 0] > 0.5) & valid, (target[:, 0] > 0.5) & valid
        self.inter += (p & t).sum()
        self.union += (p | t).sum()

    def compute(self):
        return {"iou": (self.inter / self.union.clamp_min(1)).float()}


@TASKS.register("foreground")
class ForegroundTask(TaskSpec):
    kind = "foreground"
    metric_directions = {"iou": True}
    main_metric = "iou"

    def activate(self, raw):
        return torch.sigmoid(raw)

    def valid_mask(self, label):
        return label[:, 0] >= 0

    def pixel_loss(self, pred, target):
        valid = self.valid_mask(target)
        bce = F.binary_cross_entropy(pred[:, 0].clamp(1e-6, 1 - 1e-6), target[:, 0].clamp(0, 1), reduction="none")
        return bce * valid, valid

    def pseudo_label(self, teacher_pred):
        return (teacher_pred > 0.5).float()

    def example_label(self, batch, height, width, generator):
        return (torch.rand(batch, 1, height, width, generator=generator) > 0.5).float()

    def metric(self, reduction="global"):
        return ForegroundIoU()

    def colourise(self, x, is_label=False):
        v = (x[0].detach().float().cpu().numpy().clip(0, 1) * 255).astype(np.uint8)
        return np.stack([v, v, v], -1)


@DATASETS.register("toy_squares")
class ToySquares(Dataset):
    """Bright squares on a dark background: the square is foreground and closer (depth 1 vs 3)."""

    @classmethod
    def task_info(cls, **options):
        return {"mask": ("foreground", 1), "depth": ("depth", 1)}

    def __init__(self, root=None, split="train", tasks=(), n: int = 12, size: int = 32):
        self.tasks, self.n, self.size = list(tasks), n if split == "train" else n // 2, size
        self.offset = 0 if split == "train" else 1000

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(self.offset + i)
        s = self.size
        y0, x0 = torch.randint(0, s // 2, (2,), generator=g).tolist()
        mask = torch.zeros(1, s, s)
        mask[:, y0:y0 + s // 2, x0:x0 + s // 2] = 1.0
        sample = {"image": (0.2 + 0.6 * mask).expand(3, s, s).clone(), "index": i}
        if "mask" in self.tasks:
            sample["mask"] = mask
        if "depth" in self.tasks:
            sample["depth"] = 3.0 - 2.0 * mask
        return sample


@METHODS.register("finetune_decay")
class FinetuneDecay(Method):
    @dataclass
    class Options(MethodOptions):
        weight: float = 1e-4

    def loss_terms(self, step):
        terms = self.supervised_terms(step)
        terms["decay"] = self.opts.weight * sum(p.pow(2).sum() for p in step.network.backbone.parameters())
        return terms, {}
'''


@pytest.fixture(scope="module")
def plugin(tmp_path_factory):
    path = tmp_path_factory.mktemp("plugin") / "lhl_toy_plugin.py"
    path.write_text(PLUGIN)
    if "lhl_toy_plugin" not in sys.modules:
        spec = importlib.util.spec_from_file_location("lhl_toy_plugin", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules["lhl_toy_plugin"] = module
        spec.loader.exec_module(module)
    return sys.modules["lhl_toy_plugin"]


@pytest.mark.parametrize("method", ["finetune_decay", "lwf"])
def test_a_task_type_dataset_and_method_from_one_file_run_end_to_end(tmp_path, synth_cache, plugin, method):
    overrides = [o for o in tiny_overrides(tmp_path, synth_cache) if not o.startswith(("seq=", "data.options="))]
    overrides += ["data.dataset=toy_squares", "data.options={n: 12, size: 32}", "sequence.name=toy",
                  "sequence.tasks=[mask,depth]", f"method={method}", "eval.gallery_samples=1", "train.max_steps=2"]
    res = Results.load(run(load_config([], overrides)))
    assert [p["trained"] for p in res.phases] == [["mask"], ["depth"]]
    assert set(res.phases[1]["metrics"]) == {"mask", "depth"}
    assert 0.0 <= res.phases[1]["metrics"]["mask"]["iou"] <= 1.0
    log = next((tmp_path / "runs").rglob("phase_1/metrics.csv")).read_text()
    assert ("loss/decay" if method == "finetune_decay" else "loss/lwf/mask") in log


def test_had_refuses_a_task_type_it_has_no_terms_for(plugin):
    import torch

    from lhl.losses import HADConfig, had_term
    from lhl.tasks import build_task

    task = build_task("foreground", "mask", 1)
    pred = torch.rand(1, 1, 8, 8)
    with pytest.raises(ValueError, match="foreground"):
        had_term(task, pred, pred, HADConfig())
    from lhl.methods.had import HAD

    with pytest.raises(ValueError, match=r"no HAD terms for the task type\(s\) \{'mask': 'foreground'\}"):
        HAD(HAD.Options(), {"mask": task})  # when the run is built, before anything trains
