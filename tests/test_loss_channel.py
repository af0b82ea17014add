"""One loss channel: for every method on every task type, the logged total is the loss that is
back-propagated, and it is the sum of the logged terms (each logged as it entered the loss)."""
from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf
from torch.utils.data import DataLoader

from lhl.config import Config
from lhl.core.registry import METHODS
from lhl.data.protocol import resolve_plan
from lhl.engine.lifelong_module import LifelongModule
from lhl.models import MultiHeadPredictor
from lhl.models.frozen import freeze_copy
from lhl.tasks import build_task

#: one task of every type, in the order they arrive
KINDS = [("seg", "semantic", 4), ("dep", "depth", 1), ("nor", "normal", 3), ("edge", "scalar", 1)]


def make_batch(specs, g, b=2, h=16, w=16):
    batch = {"image": torch.rand(b, 3, h, w, generator=g), "index": torch.arange(b)}
    for name, spec in specs.items():
        batch[name] = spec.example_label(b, h, w, g)
    return batch


def as_loader(batches):
    """The phase's batches as a DataLoader over one-sample dicts (iCaRL reads exemplars from its dataset)."""
    samples = [{k: v[i] for k, v in b.items()} for b in batches for i in range(b["image"].shape[0])]
    for position, sample in enumerate(samples):
        sample["index"] = torch.tensor(position)
    return DataLoader(samples, batch_size=batches[0]["image"].shape[0])


def captured_logs(module):
    logs = {}
    module.log_dict = lambda values, **kw: logs.update({k: v.detach().clone() for k, v in values.items()})
    module.log = lambda *a, **kw: None
    return logs


@pytest.mark.parametrize("name", sorted(METHODS))
def test_logged_total_is_the_backpropagated_loss_for_every_method_and_task_type(name):
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    specs = {n: build_task(k, n, c) for n, k, c in KINDS}
    cls = METHODS.get(name)
    method = cls(cls.Options(), specs)
    train_cfg = OmegaConf.structured(Config).train
    net = None
    checked = 0
    for phase in resolve_plan(method.plan(list(specs))):
        if net is None or phase.fresh_model:
            net = MultiHeadPredictor(backbone="resnet10t", head_width=8, aspp_rates=(1, 2, 3), dropout=0.0,
                                     timm_kwargs={"channels": [16, 32, 64, 128]})  # SGP: small SVDs
        for t in phase.train_tasks:
            net.add_head(specs[t])
        module = LifelongModule(net, method, phase, train_cfg)
        if module.needs_teacher():
            module.set_teacher(freeze_copy(net, list(phase.old_tasks)))
        method.to(torch.device("cpu"))
        method.on_phase_start(phase, net)
        opt = module.configure_optimizers()
        batches = [make_batch(specs, g)]  # one step per phase: every phase has its own old tasks
        for batch in batches:
            logs = captured_logs(module)
            loss = module.training_step(batch, 0)
            terms = {k: v for k, v in logs.items() if k.startswith("loss/") and k != "loss/total"}
            assert torch.equal(logs["loss/total"], loss.detach()), (name, phase.index)
            assert torch.allclose(torch.stack(list(terms.values())).sum(), loss.detach(), rtol=1e-6, atol=1e-7)
            kinds = {specs[t].kind for t in phase.train_tasks}
            assert {f"loss/{t}" for t in phase.train_tasks} <= set(terms), (name, kinds, sorted(terms))
            if method.uses_teacher and phase.old_tasks:
                assert {f"loss/{method.log_prefix}/{t}" for t in phase.old_tasks} <= set(terms)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            method.before_optimizer_step(net)
            opt.step()
            method.after_optimizer_step(net)
            method.observe(batch, phase)
            checked += 1
        method.on_phase_end(phase, net, as_loader(batches))
    assert checked == len(resolve_plan(method.plan(list(specs))))
