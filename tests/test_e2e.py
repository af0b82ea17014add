"""End-to-end lifelong runs on tiny synthetic rooms (CPU, seconds): results, files, resume."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import tiny_overrides
from lhl.cli import main
from lhl.config import load_config
from lhl.core.machine import machine_info
from lhl.runs.results import Results
from lhl.engine.runner import run


def _run(tmp_path, cache, *extra):
    return run(load_config([], tiny_overrides(tmp_path, cache) + list(extra)))


def test_had_sequence_writes_everything(tmp_path, synth_cache):
    run_dir = _run(tmp_path, synth_cache, "method=had")
    res = Results.load(run_dir)
    assert [p["phase"] for p in res.phases] == [0, 1, 2]
    assert list(res.phases[0]["metrics"]) == ["semantic"]
    assert set(res.phases[2]["metrics"]) == {"semantic", "depth", "normal"}
    m = res.phases[2]["metrics"]
    assert 0 <= m["semantic"]["miou"] <= 1 and m["depth"]["abs_err"] > 0 and 0 <= m["normal"]["mean"] <= 180
    iou = res.class_iou("semantic")[2]  # per-class IoU beside the metrics, named by the dataset
    assert len(iou) == 13 and len(res.class_names("semantic")) == 13 and res.class_names("depth") is None
    present = [v for v in iou if v == v]
    assert m["semantic"]["miou"] == pytest.approx(sum(present) / len(present), abs=1e-6)
    for name in ["results.json", "results.md", "config.yaml", "forgetting.png"]:
        assert (run_dir / name).is_file(), name
    # what made it: one machine for the three phases, this process's CPU capability and threads
    assert res.machines == [machine_info("cpu")] and "Made on: " in (run_dir / "results.md").read_text()
    for i in range(3):
        assert (run_dir / f"phase_{i}" / "phase.ckpt").is_file()
        assert (run_dir / f"phase_{i}" / "gallery.png").stat().st_size > 1000
    assert not list(run_dir.rglob("*.tmp"))
    ckpt = torch.load(run_dir / "phase_2" / "phase.ckpt", map_location="cpu", weights_only=False)
    assert list(ckpt["heads"]) == ["semantic", "depth", "normal"] and ckpt["global_step"] > 0
    # the network alone: the next phase (or a resumed run) makes its teacher from it
    assert not any("teacher" in k for k in ckpt) and all(not k.startswith("network.") for k in ckpt["network"])
    log = (run_dir / "logs" / "phase_2" / "metrics.csv").read_text()
    for key in ["had/semantic/db", "had/depth/sg", "loss/normal", "loss/total", "step_global"]:
        assert key in log, key


def test_resume_after_a_killed_phase_matches_uninterrupted(tmp_path, synth_cache):
    full = _run(tmp_path / "a", synth_cache, "method=lwf")
    part_dir = _run(tmp_path / "b", synth_cache, "method=lwf")
    # pretend the run was killed during phase 2: drop its record and checkpoint
    res = Results.load(part_dir)
    res.phases = res.phases[:2]
    res.save(part_dir)
    (part_dir / "phase_2" / "phase.ckpt").unlink()
    resumed = _run(tmp_path / "b", synth_cache, "method=lwf")
    a, b = Results.load(full).phases[2]["metrics"], Results.load(resumed).phases[2]["metrics"]
    for t in a:
        for k in a[t]:
            assert a[t][k] == pytest.approx(b[t][k], rel=1e-4, abs=1e-5), (t, k)


def test_joint_and_single_task_plans(tmp_path, synth_cache):
    j = Results.load(_run(tmp_path, synth_cache, "method=joint"))
    assert len(j.phases) == 1 and set(j.phases[0]["metrics"]) == {"semantic", "depth", "normal"}
    s = Results.load(_run(tmp_path, synth_cache, "method=single_task"))
    assert [list(p["metrics"]) for p in s.phases] == [["semantic"], ["depth"], ["normal"]]


def test_cli_run_and_report(tmp_path, synth_cache, capsys):
    assert main(["run", *tiny_overrides(tmp_path, synth_cache), "method=finetune", "train.max_steps=2"]) == 0
    out = capsys.readouterr().out
    assert "run folder:" in out
    run_dir = Path(out.split("run folder: ")[1].split()[0])
    assert run_dir.parent.parent == tmp_path / "runs" / "synthetic_s1" / "finetune" and run_dir.name == "seed0"
    assert main(["report", str(run_dir), "--json", str(tmp_path / "rep.json")]) == 0
    rep = json.loads((tmp_path / "rep.json").read_text())
    assert "forgetting" in json.dumps(rep)


def test_missing_dataset_root_is_a_clear_error(tmp_path, capsys):
    code = main(["run", "seq=nyu_s1", f"data.root={tmp_path / 'nowhere'}"])
    err = capsys.readouterr().err
    assert code == 2 and "nowhere" in err and "data.root" in err


@pytest.mark.parametrize("method", ["finetune", "lwf", "had_faithful", "ewc", "si", "mas", "er"])
def test_every_lifelong_method_runs_two_phases(tmp_path, synth_cache, method):
    res = Results.load(_run(tmp_path, synth_cache, f"method={method}", "sequence.tasks=[depth,normal]",
                            "train.max_steps=2", "eval.gallery_samples=0"))
    assert len(res.phases) == 2 and set(res.phases[1]["metrics"]) == {"depth", "normal"}
    import csv

    log = next((tmp_path / "runs").rglob("phase_1/metrics.csv"))
    expected = {"ewc": "loss/ewc", "si": "loss/si", "mas": "loss/mas", "er": "loss/er/replay",
                "lwf": "loss/lwf/depth", "had_faithful": "had/depth/db", "finetune": "loss/normal"}[method]
    values = [float(r[expected]) for r in csv.DictReader(log.open()) if r.get(expected)]
    # the penalties are 0 at the anchor (step 0) and must be positive once the weights have moved
    assert values and max(values) > 0, (expected, values)


def test_augment_and_channels_last_run(tmp_path, synth_cache):
    res = Results.load(_run(tmp_path, synth_cache, "method=had", "data.augment=true", "train.channels_last=true",
                            "sequence.tasks=[semantic,normal]", "train.max_steps=2", "eval.gallery_samples=0"))
    assert len(res.phases) == 2


def test_missing_dataset_fails_before_anything_is_written(tmp_path):
    code = main(["run", "seq=nyu_s2", f"data.root={tmp_path / 'nowhere'}", f"run.out_dir={tmp_path / 'runs'}"])
    assert code == 2 and not (tmp_path / "runs").exists()


def test_pretrained_offline_error_is_clear(monkeypatch):
    import timm

    from lhl.models.backbone import Backbone

    def offline(*a, **k):
        raise OSError("We couldn't connect to 'https://huggingface.co' to load this file")

    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(RuntimeError, match="model.pretrained=true.*offline.*model.pretrained=false"):
        Backbone("resnet18", pretrained=True)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_bf16_channels_last_augmented_run(tmp_path, synth_cache):
    res = Results.load(_run(tmp_path, synth_cache, "method=had", "train.accelerator=gpu", "train.precision=bf16-mixed",
                            "train.channels_last=true", "data.augment=true", "eval.gallery_samples=0"))
    assert len(res.phases) == 3


def test_resume_refuses_changed_protocol_and_method_presets_get_own_folders(tmp_path, synth_cache):
    from lhl.runs.identity import run_folder_of

    first = _run(tmp_path, synth_cache, "method=finetune", "sequence.tasks=[depth]", "train.max_steps=1",
                 "eval.gallery_samples=0", "name=fixed")
    with pytest.raises(ValueError, match="model.head_width=8, not 16"):  # a named folder keeps its config
        _run(tmp_path, synth_cache, "method=finetune", "sequence.tasks=[depth]", "model.head_width=16", "name=fixed")
    assert (first / "config.yaml").read_text().count("head_width: 8") == 1
    # a folder made before a schema key existed resumes: the missing key counts as its default
    cfg_file = first / "config.yaml"
    cfg_file.write_text(cfg_file.read_text().replace("  teacher_pass: shared\n", ""))
    assert "teacher_pass" not in cfg_file.read_text()
    _run(tmp_path, synth_cache, "method=finetune", "sequence.tasks=[depth]", "train.max_steps=1",
         "eval.gallery_samples=0", "name=fixed")
    a = run_folder_of(load_config([], ["seq=synthetic_s1", "method=had"])).root
    b = run_folder_of(load_config([], ["seq=synthetic_s1", "method=had_faithful"])).root
    assert a != b and b.parts[-3] == "had_faithful" and b.parts[-2] == "default"


def test_losses_are_handed_to_lightning_only_on_the_steps_the_loggers_write(tmp_path, synth_cache, monkeypatch):
    """`self.log` costs as much as a small network's step on the CPU, so the training step logs only
    on the steps Lightning writes (every train.log_every_n_steps-th): the CSV keeps those rows."""
    from lhl.engine.lifelong_module import LifelongModule

    calls = []
    log_dict = LifelongModule.log_dict

    def spy(self, values, *args, **kwargs):
        if "loss/total" in values:
            calls.append(self.global_step)
        return log_dict(self, values, *args, **kwargs)

    monkeypatch.setattr(LifelongModule, "log_dict", spy)
    run_dir = _run(tmp_path, synth_cache, "method=finetune", "train.epochs=3", "train.max_steps=5",
                   "train.log_every_n_steps=2")
    assert calls == [1, 3] * 3  # each phase: its 2nd and 4th of 5 steps
    import csv

    rows = list(csv.DictReader((run_dir / "logs" / "phase_0" / "metrics.csv").open()))
    logged = [int(r["step"]) for r in rows if r.get("loss/total")]
    assert logged == [1, 3]
    assert all(float(r["loss/total"]) > 0 for r in rows if r.get("loss/total"))
