"""Unit tests of the engine: config, slices, predictor, teacher, module step, optimiser coverage."""
from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from lhl.engine.teacher import TeacherSwap
from lhl.config import Config, ConfigError, load_config
from lhl.data.protocol import Phase, phase_slices, resolve_plan
from lhl.methods import METHODS
from lhl.models import MultiHeadPredictor
from lhl.engine.lifelong_module import LifelongModule
from lhl.models.frozen import freeze_copy
from lhl.tasks import build_task


def tiny_net():
    torch.manual_seed(0)
    net = MultiHeadPredictor(head_width=8, aspp_rates=(1, 2, 3))
    specs = {n: build_task(k, n, c) for n, k, c in [("semantic", "semantic", 5), ("depth", "depth", 1), ("normal", "normal", 3)]}
    return net, specs


def test_config_unknown_key_names_key_and_source(tmp_path):
    with pytest.raises(ConfigError, match="train.epoch'.*|.*'train.epoch'"):
        load_config([], ["train.epoch=3"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  backbon: resnet18\n")
    with pytest.raises(ConfigError) as err:
        load_config([bad], [])
    assert "bad.yaml" in str(err.value) and "backbon" in str(err.value)


def test_config_presets_and_shortcuts():
    cfg = load_config([], ["seq=synthetic_s1", "method=had", "seed=3", "train.epochs=2"])
    assert cfg.sequence.name == "synthetic_s1" and cfg.method.name == "had"
    assert cfg.run.seed == 3 and cfg.train.epochs == 2
    with pytest.raises(ConfigError, match="no seq preset 'nope'"):
        load_config([], ["seq=nope"])


def test_every_preset_loads():
    from lhl.config import experiments_dir

    for f in sorted((experiments_dir() / "seq").glob("*.yaml")):
        load_config([], [f"seq={f.stem}"])
    for f in sorted((experiments_dir() / "method").glob("*.yaml")):
        cfg = load_config([], [f"method={f.stem}"])
        assert cfg.method.name in METHODS


def test_phase_slices_are_disjoint_and_cover():
    s = phase_slices(10, 3)
    assert [x.tolist() for x in s] == [[0, 1, 2, 3], [4, 5, 6], [7, 8, 9]]
    sh = phase_slices(10, 3, shuffle=True, seed=1)
    allidx = sorted(i for x in sh for i in x.tolist())
    assert allidx == list(range(10)) and [len(x) for x in sh] == [4, 3, 3]
    assert sh[0].tolist() != [0, 1, 2, 3]
    with pytest.raises(ValueError, match="fewer than the 3 phases"):
        phase_slices(2, 3)


def test_predictor_heads_shapes_and_activations():
    net, specs = tiny_net()
    for s in specs.values():
        net.add_head(s)
    net.add_head(specs["depth"])  # idempotent
    assert net.task_names == ["semantic", "depth", "normal"]
    net.eval()
    out = net(torch.rand(2, 3, 32, 40))
    assert out["semantic"].shape == (2, 5, 32, 40)
    assert torch.allclose(out["semantic"].exp().sum(1), torch.ones(2, 32, 40), atol=1e-5)
    assert torch.allclose(out["normal"].norm(dim=1), torch.ones(2, 32, 40), atol=1e-5)
    assert out["depth"].shape == (2, 1, 32, 40)


def test_teacher_is_frozen_outside_module_and_one_backbone_pass():
    net, specs = tiny_net()
    for s in specs.values():
        net.add_head(s)
    teacher = freeze_copy(net, ["semantic", "depth"])
    assert list(teacher.heads.keys()) == ["semantic", "depth"]
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    method = METHODS.get("lwf")(METHODS.get("lwf").Options(), specs)
    train_cfg = OmegaConf.structured(Config).train
    mod = LifelongModule(net, method, Phase(2, ("normal",), ("semantic", "depth",), ("normal",), 2), train_cfg)
    mod.set_teacher(teacher)
    assert not any(k.startswith("_teacher") or ".teacher" in k for k in mod.state_dict())
    opt_params = {id(p) for g in mod.configure_optimizers().param_groups for p in g["params"]}
    assert opt_params == {id(p) for p in net.parameters()}
    assert not any(id(p) in opt_params for p in teacher.parameters())
    mod.train()
    assert not teacher.training  # Lightning's train() never reaches the teacher
    calls = []
    teacher.backbone.register_forward_hook(lambda *a: calls.append(torch.is_inference_mode_enabled()))
    batch = {"image": torch.rand(2, 3, 32, 32), "normal": torch.nn.functional.normalize(torch.randn(2, 3, 32, 32), dim=1)}
    before = [p.clone() for p in teacher.parameters()]
    loss = mod.training_step(batch, 0)
    loss.backward()
    assert calls == [True]  # one teacher backbone pass for both old heads, under inference_mode
    targets = mod.teacher_outputs(batch["image"])  # ordinary tensors: usable as saved loss targets
    assert not any(v.is_inference() or v.requires_grad for v in targets.values())
    del calls[:]
    assert all(p.grad is None for p in teacher.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, teacher.parameters()))
    assert net.heads["semantic"].classifier.weight.grad is not None  # old heads distilled


def test_release_style_teacher_pass_runs_the_backbone_per_old_task_with_the_same_loss():
    net, specs = tiny_net()
    for s in specs.values():
        net.add_head(s)
    net.eval()  # no dropout, so both steps see the same student outputs
    teacher = freeze_copy(net, ["semantic", "depth"])
    method = METHODS.get("had")(METHODS.get("had").Options(), specs)
    batch = {"image": torch.rand(2, 3, 32, 32), "normal": torch.nn.functional.normalize(torch.randn(2, 3, 32, 32), dim=1)}
    losses, passes = {}, {}
    for mode in ("shared", "per_task"):
        train_cfg = OmegaConf.structured(Config).train
        train_cfg.teacher_pass = mode
        mod = LifelongModule(net, method, Phase(2, ("normal",), ("semantic", "depth",), ("normal",), 2), train_cfg)
        mod.set_teacher(teacher)
        calls = []
        hook = teacher.backbone.register_forward_hook(lambda *a: calls.append(1))
        losses[mode] = mod.training_step(batch, 0).detach()
        hook.remove()
        passes[mode] = len(calls)
    assert passes == {"shared": 1, "per_task": 2}
    assert torch.allclose(losses["shared"], losses["per_task"], rtol=1e-6)
    with pytest.raises(ConfigError, match="train.teacher_pass"):
        load_config([], ["train.teacher_pass=twice"])


def test_nan_loss_raises_clear_error():
    net, specs = tiny_net()
    net.add_head(specs["depth"])
    method = METHODS.get("finetune")(METHODS.get("finetune").Options(), specs)
    mod = LifelongModule(net, method, Phase(0, ("depth",), (), ("depth",), 0), OmegaConf.structured(Config).train)
    batch = {"image": torch.rand(2, 3, 32, 32), "depth": torch.full((2, 1, 32, 32), float("nan"))}
    with pytest.raises(FloatingPointError, match="non-finite loss at phase 0.*loss/depth"):
        mod.training_step(batch, 0)


def test_method_plans():
    order = ["semantic", "depth", "normal"]
    _, specs = tiny_net()
    plan = resolve_plan(METHODS.get("finetune")(None, specs).plan(order))
    assert [(p.train_tasks, p.old_tasks, p.eval_tasks, p.slice) for p in plan] == [
        (("semantic",), (), ("semantic",), 0),
        (("depth",), ("semantic",), ("semantic", "depth"), 1),
        (("normal",), ("semantic", "depth"), ("semantic", "depth", "normal"), 2),
    ]
    joint = resolve_plan(METHODS.get("joint")(None, specs).plan(order))
    assert len(joint) == 1 and joint[0].train_tasks == tuple(order) and joint[0].slice is None
    assert joint[0].old_tasks == () and joint[0].eval_tasks == tuple(order)
    st = resolve_plan(METHODS.get("single_task")(None, specs).plan(order))
    assert all(p.fresh_model and p.slice is None and p.eval_tasks == p.train_tasks and not p.old_tasks for p in st)


def test_unknown_method_option_is_named():
    from lhl.config.resolve import options_from_dict

    cls = METHODS.get("lwf")
    with pytest.raises(ConfigError, match="method.neww"):
        options_from_dict(cls.Options, {"neww": 1}, "config")


def test_paper_preset_is_the_release_protocol():
    cfg = load_config([], ["seq=nyu_s1_paper", "method=had_faithful"])
    assert list(cfg.sequence.tasks) == ["semantic", "depth", "normal"]
    assert (cfg.train.optimizer, cfg.train.lr, cfg.train.weight_decay, cfg.train.epochs) == ("adam", 1e-4, 1e-5, 20)
    assert (cfg.data.batch_size, cfg.data.shuffle, cfg.data.drop_last, cfg.run.seed) == (64, False, True, 4)
    assert (cfg.model.backbone, cfg.model.output_stride, cfg.model.head_width) == ("resnet18.tv_in1k", 8, 256)
    assert list(cfg.model.aspp_rates) == [12, 24, 36] and cfg.model.dropout == 0.5
    assert cfg.method.mode == "faithful" and cfg.method.new == 3.0 and cfg.eval.reduction == "mtan"


def test_sequences_of_the_issue_exist():
    expect = {
        "nyu_s1": ["semantic", "depth", "normal"], "nyu_s2": ["normal", "depth", "semantic"],
        "nyu_s1_shuffled": ["semantic", "depth", "normal"], "nyu_s2_shuffled": ["normal", "depth", "semantic"],
        "cityscapes_s1": ["semantic", "depth"], "cityscapes_s2": ["depth", "semantic"],
        "cityscapes19_s1": ["semantic", "depth"], "synthetic_s1": ["semantic", "depth", "normal"],
        "taskonomy_s1": ["semantic", "depth", "normal", "edge", "keypoints"],
    }
    for name, tasks in expect.items():
        cfg = load_config([], [f"seq={name}"])
        assert list(cfg.sequence.tasks) == tasks, name
    assert load_config([], ["seq=nyu_s1_shuffled"]).data.shuffle_split
    assert load_config([], ["seq=cityscapes_s1"]).data.options.classes == 7
    assert load_config([], ["seq=cityscapes19_s1"]).data.options.classes == 19


def test_heads_are_added_across_phases_and_optimised():
    net, specs = tiny_net()
    method = METHODS.get("finetune")(None, specs)
    train_cfg = OmegaConf.structured(Config).train
    for i, name in enumerate(["semantic", "depth"]):
        net.add_head(specs[name])
        mod = LifelongModule(net, method, Phase(i, (name,), (), (name,), i), train_cfg)
        opt_ids = {id(p) for g in mod.configure_optimizers().param_groups for p in g["params"]}
        assert {id(p) for p in net.heads[name].parameters()} <= opt_ids
        assert {id(p) for p in net.backbone.parameters()} <= opt_ids
    assert net.task_names == ["semantic", "depth"]


def test_teacher_stays_frozen_in_eval_during_fit():
    import lightning.pytorch as pl
    from torch.utils.data import DataLoader

    net, specs = tiny_net()
    for s in specs.values():
        net.add_head(s)
    method = METHODS.get("had")(METHODS.get("had").Options(), specs)
    mod = LifelongModule(net, method, Phase(1, ("depth",), ("semantic",), ("depth",), 1), OmegaConf.structured(Config).train)
    seen = []

    class Probe(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            t = pl_module.teacher
            seen.append((t.training, any(p.requires_grad for p in t.parameters()),
                         any(m.training for m in t.modules()), pl_module.network.training))

    data = [{"image": torch.rand(3, 32, 32), "depth": torch.rand(1, 32, 32) + 0.5} for _ in range(6)]
    trainer = pl.Trainer(max_steps=3, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         callbacks=[TeacherSwap(), Probe()])
    before = {k: v.clone() for k, v in net.state_dict().items()}
    trainer.fit(mod, DataLoader(data, batch_size=2))
    assert seen and all(s == (False, False, False, True) for s in seen)
    # the teacher is the network as it was before the phase's first step, old heads only
    assert list(mod.teacher.heads.keys()) == ["semantic"]
    for k, v in mod.teacher.state_dict().items():
        assert torch.equal(v, before[k]), k
    after = net.state_dict()
    assert any(not torch.equal(after[k], before[k]) for k in mod.teacher.state_dict())  # the student moved


def test_a_phase_with_old_tasks_refuses_to_fit_without_a_teacher():
    import lightning.pytorch as pl
    from torch.utils.data import DataLoader

    net, specs = tiny_net()
    for s in specs.values():
        net.add_head(s)
    method = METHODS.get("lwf")(METHODS.get("lwf").Options(), specs)
    mod = LifelongModule(net, method, Phase(1, ("depth",), ("semantic",), ("depth",), 1), OmegaConf.structured(Config).train)
    data = [{"image": torch.rand(3, 32, 32), "depth": torch.rand(1, 32, 32) + 0.5} for _ in range(2)]
    trainer = pl.Trainer(max_steps=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    with pytest.raises(RuntimeError, match="TeacherSwap"):
        trainer.fit(mod, DataLoader(data, batch_size=2))
