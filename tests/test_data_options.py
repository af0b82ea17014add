"""data.options checked against the dataset, the seq presets' options, and phase slices that stay put."""
import inspect

import numpy as np
import pytest
from omegaconf import OmegaConf
from PIL import Image

from lhl.config import DataConfig, experiments_dir, load_config
from lhl.data import datamodule
from lhl.config.resolve import checked_options, dataset_options, task_info
from lhl.data.datamodule import LifelongDataModule, build_dataset
from lhl.data.sources import DATASETS
from lhl.data.protocol import Phase


def _data(dataset, root=None, **options):
    cfg = OmegaConf.structured(DataConfig)
    cfg.dataset, cfg.root, cfg.options = dataset, root, options
    return cfg


# --- data.options keys ---------------------------------------------------------------------------
def test_unknown_option_names_the_key_the_dataset_and_the_valid_options(tmp_path):
    cfg = _data("synthetic", n_trian=4, cache=str(tmp_path))
    for call in (lambda: build_dataset(cfg, "train", ["depth"]), lambda: task_info(cfg), lambda: checked_options(cfg)):
        with pytest.raises(ValueError) as err:
            call()
        msg = str(err.value)
        assert "data.options.n_trian" in msg and "'synthetic'" in msg and "did you mean 'n_train'" in msg
        assert "valid options: n_train, n_val, height, width, seed, cache" in msg
    assert not (tmp_path / "synthetic").exists(), "refused before generating anything"
    with pytest.raises(ValueError, match=r"data.options.height: dataset 'nyuv2'.*valid options: none"):
        task_info(_data("nyuv2", height=3))
    with pytest.raises(ValueError, match=r"data.options.colour.*also unknown: \['size'\].*valid options: classes"):
        build_dataset(_data("cityscapes", colour=1, size=[4, 4]), "val", ["depth"])


def test_known_options_pass_through_as_plain_values():
    cls, options = checked_options(_data("taskonomy", size=[8, 8], buildings={"train": ["a"]}))
    assert cls is DATASETS.get("taskonomy") and options == {"size": [8, 8], "buildings": {"train": ["a"]}}
    assert type(options["size"]) is list and type(options["buildings"]) is dict
    assert task_info(_data("cityscapes", classes=7))["semantic"] == ("semantic", 7)
    assert "index_tasks" in dataset_options(DATASETS.get("taskonomy"))


# --- the seq presets -------------------------------------------------------------------------------
PRESETS = sorted(p.stem for p in (experiments_dir() / "seq").glob("*.yaml"))


@pytest.mark.parametrize("name", PRESETS)
def test_seq_preset_options_bind_to_the_dataset(name):
    cfg = load_config([], [f"seq={name}"])
    cls, options = checked_options(cfg.data)
    inspect.signature(cls).bind(root=None, split="train", tasks=list(cfg.sequence.tasks), **options)
    assert set(cfg.sequence.tasks) <= set(task_info(cfg.data))


def test_a_preset_with_an_option_the_dataset_does_not_take_fails(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("data:\n  dataset: nyuv2\n  options: {classes: 7}\n")
    with pytest.raises(ValueError, match="data.options.classes: dataset 'nyuv2'"):
        checked_options(load_config([bad], []).data)


def _png(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def _taskonomy_tree(root, n=4, lacking=None, domains=("segment_semantic", "depth_zbuffer", "normal",
                                                        "edge_texture", "keypoints2d")):
    """Building 'h' with n samples; sample k's rgb is 10 * (k + 1); `lacking` = {k: domain} left out."""
    lacking = lacking or {}
    for k in range(n):
        stem = f"point_{k}_view_0"
        _png(root / "h" / "rgb" / f"{stem}_domain_rgb.png", np.full((4, 6, 3), 10 * (k + 1), np.uint8))
        for d in domains:
            if lacking.get(k) == d:
                continue
            dtype = np.uint8 if d == "segment_semantic" else np.uint16
            arr = np.full((4, 6, 3), 200, np.uint8) if d == "normal" else np.full((4, 6), 1 + k, dtype)
            _png(root / "h" / d / f"{stem}_domain_{d}.png", arr)


def test_taskonomy_preset_reads_the_split_csv_inside_the_data_root(tmp_path):
    cfg = load_config([], ["seq=taskonomy_s1", f"data.root={tmp_path / 'absent'}"])
    with pytest.raises(FileNotFoundError, match=r"absent not found \(config key data.root\)"):
        build_dataset(cfg.data, "val", ["depth"])
    _taskonomy_tree(tmp_path, n=2)
    (tmp_path / "train_val_test_tiny.csv").write_text("id,train,val,test\nh,1,0,0\n")
    cfg = load_config([], ["seq=taskonomy_s1", f"data.root={tmp_path}"])
    tasks = list(cfg.sequence.tasks)
    ds = build_dataset(cfg.data, "train", tasks, index_tasks=tasks)
    assert len(ds) == 2 and ds[0]["depth"].shape == (1, 256, 256) and set(tasks) <= set(ds[1])


# --- phase slices over one sample list -------------------------------------------------------------
def test_phase_slices_stay_disjoint_when_taskonomy_drops_an_incomplete_sample(tmp_path):
    _taskonomy_tree(tmp_path, n=4, lacking={1: "segment_semantic"}, domains=("segment_semantic", "depth_zbuffer"))
    cfg = _data("taskonomy", str(tmp_path), buildings={"train": ["h"], "val": ["h"]}, drop_incomplete=True)
    dm = LifelongDataModule(cfg, dict.fromkeys(["semantic", "depth"]), seed=0)
    seen, val_sizes = [], []
    for i, task in enumerate(["semantic", "depth"]):
        dm.set_phase(Phase(i, (task,), eval_tasks=(task,), slice=i))
        ds = dm._train_set()
        seen.append(sorted(round(float(ds[j]["image"][0, 0, 0]) * 255 / 10) - 1 for j in range(len(ds))))
        val_sizes.append(len(dm.val_dataloader().dataset))
    assert seen == [[0, 2], [3]], "sample 1 lacks semantic: both phases slice the samples 0, 2, 3"
    assert val_sizes == [3, 3]


def test_a_dataset_whose_length_changes_between_phases_is_refused(monkeypatch):
    monkeypatch.setattr(datamodule, "build_dataset",
                        lambda cfg, split, tasks, index_tasks=None: list(range(6 if tasks == ["a"] else 5)))
    dm = LifelongDataModule(_data("synthetic"), dict.fromkeys(["a", "b"]), seed=0)
    dm.set_phase(Phase(0, ("a",), eval_tasks=("a",), slice=0))
    assert len(dm._train_set()) == 3
    dm.set_phase(Phase(1, ("b",), eval_tasks=("b",), slice=1))
    with pytest.raises(RuntimeError, match="5 samples for tasks \\['b'\\] but 6 when the phase slices were cut"):
        dm._train_set()
