"""The first hour of a user: run folders named by what changes results, help on every command,
`lhl list` / `lhl runs`, --print-config, "did you mean", multirun, aggregate-only and SLURM compare,
and the presets shipped in the package."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from conftest import tiny_overrides
from lhl.cli import main
from lhl.config import ConfigError, experiments_dir, load_config
from lhl.config.sweep import expand, split_multirun
from lhl.runs.identity import run_folder_of


def _folder(*overrides):
    return run_folder_of(load_config([], list(overrides))).root


def _code(argv):
    try:
        return main(argv)
    except SystemExit as stop:  # argparse's --help
        return stop.code


def test_run_folders_are_named_by_results_relevant_overrides():
    base = ["seq=synthetic_s1", "method=had"]
    assert _folder(*base) == Path("runs/synthetic_s1/had/default/seed0")
    assert _folder(*base, "seed=2").parts[-2:] == ("default", "seed2")
    # what equals the preset, hardware, logging and display keep the default folder
    assert _folder(*base, "data.batch_size=8", "method.new=3", "gpus=2", "logger=none",
                   "train.progress_bar=false", "data.num_workers=4") == _folder(*base)
    a = _folder(*base, "train.epochs=5", "data.batch_size=16")
    assert a.parts[-2] not in ("default",) and a == _folder(*base, "data.batch_size=16", "train.epochs=5")
    assert len({a, _folder(*base, "data.batch_size=4"), _folder(*base, "method.new=1"), _folder(*base)}) == 4
    assert _folder(*base, "name=mine") == Path("runs/mine")
    assert _folder("seq=synthetic_s1", "method=had_faithful").parts[-3] == "had_faithful"


def test_help_on_every_command(capsys):
    for cmd in (["run"], ["compare"], ["report"], ["data"], ["data", "synth"], ["distill"], ["bench"],
                ["bench-e2e"], ["slurm"], ["list"], ["runs"], []):
        assert _code([*cmd, "--help"]) == 0, cmd
        assert "usage" in capsys.readouterr().out.lower(), cmd


def test_list_names_presets_registries_and_pairs(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for word in ("synthetic_small_s1", "had_faithful", "finetune", "taskonomy", "semantic", "normal",
                 "resnet18", "segformer_pvt_v2_b0", "heteroakd", "swin_to_cnn"):
        assert word in out, word


def test_print_config_and_multirun(tmp_path, capsys):
    args = ["run", "seq=synthetic_small_s1", f"out={tmp_path}", "--print-config"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"# run folder: {tmp_path}/synthetic_small_s1/finetune/")
    assert yaml.safe_load(text)["sequence"]["name"] == "synthetic_small_s1" and not any(tmp_path.iterdir())
    assert main([*args, "method=had", "-m", "method.new=1,3,10"]) == 0
    docs = capsys.readouterr().out.split("---\n")[:-1]
    folders = [d.splitlines()[0] for d in docs]
    assert [yaml.safe_load(d)["method"]["new"] for d in docs] == [1, 3, 10] and len(set(folders)) == 3
    rest, sweeps = split_multirun(["a=1", "-m", "x=[1,2],[3]", "--multirun", "y=p,q"])
    assert expand(rest, sweeps) == [["a=1", "x=[1,2]", "y=p"], ["a=1", "x=[1,2]", "y=q"],
                                    ["a=1", "x=[3]", "y=p"], ["a=1", "x=[3]", "y=q"]]


@pytest.mark.parametrize("args,hint", [
    (["train.epoch=3"], "Did you mean 'train.epochs'?"),
    (["trian.epochs=3"], "Did you mean 'train'?"),
    (["seq=synthetic_smal_s1"], "Did you mean 'synthetic_small_s1'?"),
    (["method=had_faithfull"], "Did you mean 'had_faithful'?"),
    (["method=had", "method.neww=3"], "did you mean 'new'?"),
])
def test_did_you_mean(args, hint):
    with pytest.raises(ConfigError, match=hint.replace("?", r"\?").replace(".", r"\.")):
        load_config([], args)


def test_presets_come_from_the_package_not_the_working_directory(tmp_path, monkeypatch):
    shipped = experiments_dir()
    assert (shipped / "seq" / "synthetic_s1.yaml").is_file() and (shipped / "slurm" / "template.sbatch").is_file()
    (tmp_path / "experiments" / "seq").mkdir(parents=True)
    (tmp_path / "experiments" / "seq" / "synthetic_s1.yaml").write_text("bogus: 1\n")
    monkeypatch.chdir(tmp_path)
    assert experiments_dir() == shipped and load_config([], ["seq=synthetic_s1"])
    monkeypatch.setenv("LHL_EXPERIMENTS", str(tmp_path / "experiments"))
    with pytest.raises(ConfigError, match="bogus"):  # a user folder when given explicitly
        load_config([], ["seq=synthetic_s1"])
    monkeypatch.setenv("LHL_EXPERIMENTS", "")  # restored after the test; the flag sets it
    assert main(["--experiments", str(shipped), "run", "seq=synthetic_s1", "--print-config"]) == 0
    assert experiments_dir() == shipped


def test_missing_extras_fail_clearly(monkeypatch, tmp_path):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name.startswith("tensorboard") else real(name, *a))
    with pytest.raises(ConfigError, match=r"lhl\[tensorboard\]"):
        load_config([], ["logger=tensorboard"])
    from lhl.data.convert import nyuv2_mat

    monkeypatch.setattr(nyuv2_mat, "sio", None)
    monkeypatch.setattr(nyuv2_mat, "_SCIPY_ERROR", ImportError("no scipy"), raising=False)
    with pytest.raises(ImportError, match=r"lhl\[convert\]"):
        nyuv2_mat.cli(["--mat", "a.mat", "--splits", "b.mat", "--out", str(tmp_path / "o")])


def _tiny(tmp_path, cache, *extra):
    return ["run", *tiny_overrides(tmp_path, cache, **{"sequence.tasks": "[depth]", "train.max_steps": 1,
                                                        "eval.gallery_samples": 0}), *extra]


def test_two_configurations_two_folders_resume_list_and_aggregate(tmp_path, synth_cache, capsys, monkeypatch):
    assert main(_tiny(tmp_path, synth_cache, "data.batch_size=4")) == 0
    a = Path(capsys.readouterr().out.split("run folder: ")[1].split()[0])
    assert main(_tiny(tmp_path, synth_cache, "data.batch_size=2")) == 0
    b = Path(capsys.readouterr().out.split("run folder: ")[1].split()[0])
    assert a != b and a.parent.parent == b.parent.parent and a.name == b.name == "seed0"
    assert yaml.safe_load((b.parent / "overrides.yaml").read_text())["data.batch_size"] == 2
    # the same configuration again: resumed (nothing left to train), its table printed once
    mtime = (a / "results.json").stat().st_mtime_ns
    assert main(_tiny(tmp_path, synth_cache, "data.batch_size=4")) == 0
    out = capsys.readouterr().out
    assert f"run folder: {a}" in out and "== phase" not in out and (a / "results.json").stat().st_mtime_ns == mtime
    from lightning.pytorch.utilities import rank_zero_only

    monkeypatch.setattr(rank_zero_only, "rank", 1)  # another DDP rank prints no table
    assert main(_tiny(tmp_path, synth_cache, "data.batch_size=4")) == 0
    assert "run folder:" not in capsys.readouterr().out
    monkeypatch.setattr(rank_zero_only, "rank", 0)

    assert main(["runs", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out
    assert "data.batch_size=2" in out and "data.batch_size=4" in out and out.count("seed0 1/1") == 2

    # aggregate-only over given folders: never trains, one folder per comparison
    assert main(["compare", f"runs={a} {b}", f"out={tmp_path / 'runs'}"]) == 0
    out = capsys.readouterr().out
    assert "finetune " in out and (Path(out.split("comparison written to ")[1].split()[0]) / "compare.md").is_file()
    # aggregate-only over what a config would produce: seed 1 is missing and is named, not trained
    base = _tiny(tmp_path, synth_cache, "data.batch_size=4")[1:]
    assert main(["compare", *[x for x in base if not x.startswith("seq=")], "seq=synthetic_s1", "methods=finetune",
                 "seeds=0 1", "aggregate=true"]) == 0
    out = capsys.readouterr().out
    assert "seed1" in out and "missing" in out and not a.with_name("seed1").exists()


def test_compare_slurm_writes_an_array_and_a_dependent_aggregation(tmp_path, capsys):
    from lhl.config.compose import ConfigError as _  # noqa: F401  (import check only)
    from lhl.tools import slurm
    from lhl.tools.compare_slurm import aggregate_script

    assert main(["compare", "seq=synthetic_small_s1", "methods=finetune had", "seeds=0 1", f"out={tmp_path}",
                 "slurm=true", "submit=no", "gpus=2", "time=01:00:00", "train.epochs=2"]) == 0
    out = capsys.readouterr().out
    folder = Path(out.split("comparison folder: ")[1].split()[0]) / "slurm"
    tasks = sorted(folder.glob("task_*.sbatch"))
    assert len(tasks) == 4 and "train.devices=2" in tasks[0].read_text() and "train.epochs=2" in tasks[3].read_text()
    array = (folder / "array.sbatch").read_text()
    assert "#SBATCH --array=0-3" in array and "#SBATCH --gres=gpu:2" in array and 'task_"$SLURM_ARRAY_TASK_ID"' in array
    agg = (folder / "aggregate.sbatch").read_text()
    assert "aggregate=true" in agg and "slurm=true" not in agg and "gpus=2" not in agg and "--dependency" not in agg
    job, _, _ = slurm.split_args(["gpus=2"])
    assert "#SBATCH --dependency=afterany:4242" in aggregate_script(job, "x", folder, ["seq=s"], "4242")
    assert "sbatch --dependency=afterany:$id" in out
