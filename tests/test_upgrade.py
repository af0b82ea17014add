"""An architecture upgrade mid-sequence (`model.upgrade_at` / `model.upgrade_to`): config checks,
the boundary (new student family, old teacher, blank heads), the aligned-feature terms, the
phase and mid-phase checkpoints, and a tiny run resumed on either side of the boundary."""
from __future__ import annotations

import csv

import pytest
import torch

from conftest import CrashInPhase1, tiny_overrides
from lhl.config import ConfigError, load_config
from lhl.data.protocol import Phase
import lhl.engine.runner as runner_mod
from lhl.engine.lifelong_module import LifelongModule
from lhl.engine.runner import run
from lhl.engine.upgrade import architecture_at, cross_boundary
from lhl.losses.aligned_logits import regression_aligned_loss, semantic_aligned_loss
from lhl.methods.had import HAD
from lhl.methods.lwf import LwF
from lhl.models import MultiHeadPredictor
from lhl.runs.results import Results
from lhl.tasks import build_task

UPGRADE = ["model.upgrade_at=1", "model.upgrade_to=pvt_v2_b0"]


def _cfg(*extra):
    return load_config([], ["seq=synthetic_s1", "method=had", *extra])


def _specs():
    return {"semantic": build_task("semantic", "semantic", 13), "depth": build_task("depth", "depth", 1),
            "normal": build_task("normal", "normal", 3)}


@pytest.mark.parametrize("extra,match", [
    (["model.upgrade_at=1"], "go together"),
    (["model.upgrade_to=pvt_v2_b0"], "go together"),
    (["model.upgrade_at=0", "model.upgrade_to=pvt_v2_b0"], r"upgrade_at=0: must be a phase index in 1\.\.2"),
    (["model.upgrade_at=3", "model.upgrade_to=pvt_v2_b0"], r"1\.\.2 \(the sequence has 3 phases"),
    (["model.upgrade_at=1", "model.upgrade_to=no_such_net"], "neither a timm model .* nor a segmenter name"),
    (["model.upgrade_at=1", "model.upgrade_to=segformer_pvt_v2_b0"], "one DeepLabV3 .* use deeplabv3_pvt_v2_b0"),
    (["model.upgrade_at=1", "model.upgrade_to=vit_tiny_patch16_224"], "one fixed image size"),
    (["method.upgrade_feature_kd=false"], "method.upgrade_feature_kd=False acts only across an architecture upgrade"),
])
def test_upgrade_config_errors_name_the_key_and_the_fix(extra, match):
    with pytest.raises(ConfigError, match=match):
        _cfg(*extra)


@pytest.mark.parametrize("method,why", [
    ("ewc", "per parameter of the old network"), ("si", "per parameter"), ("mas", "per parameter"),
    ("sgp", "per convolution of the old network"), ("spg", "per parameter"), ("joint", "one phase"),
    ("single_task", "already starts from a new network"),
])
def test_methods_bound_to_the_old_parameters_are_refused(method, why):
    with pytest.raises(ConfigError, match=f"method '{method}' cannot cross an architecture upgrade: .*{why}"):
        load_config([], ["seq=synthetic_s1", f"method={method}", *UPGRADE])


def test_architecture_at_names_the_upgrade_encoder():
    cfg = _cfg("model.upgrade_at=2", "model.upgrade_to=deeplabv3_convnext_atto")
    old = cfg.model.backbone
    assert [architecture_at(cfg, i) for i in range(3)] == [old, old, "convnext_atto"]
    for preset in ("had_upgrade_blank", "had_upgrade_output", "had_upgrade_feature"):
        cfg = load_config([], ["seq=synthetic_s1", f"method={preset}"])
        assert cfg.model.upgrade_at == 2 and cfg.model.upgrade_to == "pvt_v2_b0"


def _boundary(method):
    cfg = _cfg(*UPGRADE, "model.head_width=8", "model.init=scratch", "model.backbone=resnet18")
    specs = _specs()
    old = MultiHeadPredictor("resnet18", head_width=8, aspp_rates=(1, 2, 3))
    old.add_head(specs["semantic"])
    old.add_head(specs["depth"])
    phase = Phase(1, ("normal",), ("semantic", "depth"), ("semantic", "depth", "normal"), 1, upgrade=True)
    torch.manual_seed(0)
    new, teacher = cross_boundary(cfg, phase, old, specs)
    new.add_head(specs["normal"])
    return old, new, teacher, phase, method, specs


def test_the_student_is_the_new_family_and_the_teacher_the_frozen_old_network():
    old, new, teacher, phase, _, _ = _boundary(None)
    assert new.architecture == "pvt_v2_b0" and teacher.architecture == "resnet18"
    assert new.task_names == ["semantic", "depth", "normal"] and teacher.task_names == ["semantic", "depth"]
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    same = [torch.equal(a, b) for a, b in zip(teacher.state_dict().values(), old.state_dict().values())]
    assert all(same)


def test_old_heads_are_distilled_with_output_and_aligned_feature_terms():
    _, new, teacher, phase, _, specs = _boundary(None)
    method = HAD(HAD.Options(), specs)
    aligner = method.upgrade_aligner(phase, new, teacher)
    module = LifelongModule(new, method, phase, _cfg().train, step_offset=0, aligner=aligner)
    module.set_teacher(teacher)
    images = torch.rand(2, 3, 32, 32)
    batch = {"image": images, "normal": torch.nn.functional.normalize(torch.randn(2, 3, 32, 32), dim=1)}
    module.log_dict = module.log = lambda *a, **k: None
    loss = module.training_step(batch, 0)
    loss.backward()
    assert all(p.grad is not None for p in aligner.proj_s.parameters())  # the student projectors learn
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in new.backbone.parameters())
    student, s_feats = new.forward_with_features(images, ["normal", "semantic", "depth"])
    t_out, t_feats = module.teacher_outputs_with_features(images)
    from lhl.methods.base import Step

    terms, diags = method.loss_terms(Step(new, student, t_out, batch, phase, s_feats, t_feats, aligner))
    for task in ("semantic", "depth"):  # a semantic and a regression old head
        assert {f"had/{task}", f"upgrade_akd/{task}", f"upgrade_proj/{task}"} <= set(terms), task
        assert f"upgrade/{task}/teacher_share" in diags and torch.isfinite(terms[f"upgrade_akd/{task}"])
    assert "normal" in terms
    # the switches: output terms only, or blank old heads (no teacher, no old head in the step)
    assert HAD(HAD.Options(upgrade_feature_kd=False), specs).upgrade_aligner(phase, new, teacher) is None
    blank = LwF(LwF.Options(upgrade_old_heads="blank"), specs)
    assert not blank.uses_teacher_in(phase) and blank.student_heads(phase) == ["normal"]
    assert blank.upgrade_aligner(phase, new, teacher) is None
    with pytest.raises(ValueError, match=r"upgrade_feature_stages=\[-6\].*has 5 encoder stages"):
        HAD(HAD.Options(upgrade_feature_stages=[-6]), specs).upgrade_aligner(phase, new, teacher)


def test_aligned_terms_vanish_at_agreement_and_are_positive_otherwise():
    spec = build_task("depth", "depth", 1)
    target = 1 + torch.rand(2, 1, 8, 8)
    assert regression_aligned_loss(spec, target.clone(), target.clone(), target)["akd"] == 0
    z_s = torch.randn(2, 1, 8, 8, requires_grad=True)
    out = regression_aligned_loss(spec, target + 0.1, z_s, target)
    out["akd"].backward()
    assert out["akd"] > 0 and z_s.grad.abs().sum() > 0 and 0 <= out["teacher_share"] <= 1
    normal = build_task("normal", "normal", 3)
    n = torch.nn.functional.normalize(torch.randn(2, 3, 8, 8), dim=1)
    assert regression_aligned_loss(normal, torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 8), n)["akd"] > 0
    label = torch.randint(0, 5, (2, 8, 8))
    label[0, 0, 0] = -1
    sem = semantic_aligned_loss(torch.randn(2, 5, 8, 8), torch.randn(2, 5, 8, 8, requires_grad=True), label)
    assert torch.isfinite(sem["akd"]) and sem["akd"] > 0


def test_a_mid_phase_checkpoint_reloads_into_the_old_architecture_teacher():
    _, new, teacher, phase, _, specs = _boundary(None)
    method = HAD(HAD.Options(), specs)
    module = LifelongModule(new, method, phase, _cfg().train, aligner=method.upgrade_aligner(phase, new, teacher))
    module.set_teacher(teacher)
    ckpt = {}
    module.on_save_checkpoint(ckpt)
    assert ckpt["lhl"]["architecture"] == "pvt_v2_b0"
    again = LifelongModule(new, method, phase, _cfg().train)
    again.set_teacher(teacher)
    again.on_load_checkpoint(ckpt)  # the resnet teacher's weights load into the resnet teacher
    assert again.teacher is teacher
    ckpt["lhl"]["architecture"] = "resnet18"
    with pytest.raises(ValueError, match="holds a 'resnet18' network, not 'pvt_v2_b0'"):
        again.on_load_checkpoint(ckpt)


def _drop_after(run_dir, res, keep: int) -> None:
    res.phases = res.phases[:keep]
    res.save(run_dir)
    for i in range(keep, 3):
        (run_dir / f"phase_{i}" / "phase.ckpt").unlink()


def test_an_upgrade_run_records_both_architectures_and_resumes_on_either_side(tmp_path, synth_cache, monkeypatch):
    args = tiny_overrides(tmp_path, synth_cache, **{"train.max_steps": 2, "eval.gallery_samples": 0,
                                                    "train.checkpoint_every_steps": 1}) + [
        "method=had_upgrade_feature", "model.upgrade_at=1"]
    run_dir = run(load_config([], args))
    res = Results.load(run_dir)
    assert res.meta["architectures"] == ["resnet18", "pvt_v2_b0", "pvt_v2_b0"]
    assert "upgrade_to: pvt_v2_b0" in (run_dir / "config.yaml").read_text()
    held = [torch.load(run_dir / f"phase_{i}" / "phase.ckpt", weights_only=False)["architecture"] for i in range(3)]
    assert held == ["resnet18", "pvt_v2_b0", "pvt_v2_b0"]
    rows = list(csv.DictReader((run_dir / "logs" / "phase_1" / "metrics.csv").open()))
    for key in ("loss/had/semantic", "loss/upgrade_akd/semantic", "loss/upgrade_proj/semantic"):
        assert any(r.get(key) for r in rows), key
    final = res.phases

    def same(resumed):
        for p, q in zip(final, resumed.phases):
            for t in p["metrics"]:
                for k in p["metrics"][t]:
                    assert q["metrics"][t][k] == pytest.approx(p["metrics"][t][k], rel=1e-4, abs=1e-5), (p["phase"], t, k)

    # killed after the upgrade phase's checkpoint: phase 2 resumes on the new network
    _drop_after(run_dir, res, 2)
    same(Results.load(run(load_config([], args))))
    # killed during the upgrade phase (after its mid-phase checkpoint of step 1): the run restarts from
    # phase 0's resnet18 checkpoint, crosses the boundary again and continues the phase from last.ckpt
    _drop_after(run_dir, Results.load(run_dir), 1)
    real = runner_mod.phase_trainer
    with monkeypatch.context() as m:
        m.setattr(runner_mod, "phase_trainer", lambda *a, **k: _add_callback(real(*a, **k), CrashInPhase1(2)))
        with pytest.raises(RuntimeError, match="simulated crash"):
            run(load_config([], args))
    last = run_dir / "phase_1" / "last.ckpt"
    assert torch.load(last, map_location="cpu", weights_only=False)["lhl"]["architecture"] == "pvt_v2_b0"
    same(Results.load(run(load_config([], args))))
    assert not last.exists()


def _add_callback(trainer, cb):
    trainer.callbacks.insert(0, cb)
    return trainer
