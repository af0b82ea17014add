"""Synthetic rooms: determinism, layout, value ranges, geometric consistency, caching and the CLI."""
import dataclasses
import json
import os

import numpy as np
import pytest
import torch

from lhl.data.sources import DATASETS
from lhl.data.sources.synthetic import SyntheticRooms, cli
from lhl.data.synthetic_rooms import writer
from lhl.data.synthetic_rooms.camera import backproject, intrinsics, look_rotation, to_mtan_normals
from lhl.data.synthetic_rooms.render import render
from lhl.data.synthetic_rooms.scene import CLASS_ID, sample_scene

TINY = dict(n_train=8, n_val=4, height=32, width=48, seed=0)


@pytest.fixture(scope="module")
def views():
    return [writer.generate_sample(0, "val", i, 48, 64) for i in range(6)]


@pytest.fixture(scope="module")
def tiny_cache(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    SyntheticRooms(split="train", cache=cache, **TINY)
    return cache


def test_same_seed_same_arrays_other_seed_differs():
    a = writer.generate_sample(0, "train", 3, 32, 48)
    b = writer.generate_sample(0, "train", 3, 32, 48)
    c = writer.generate_sample(1, "train", 3, 32, 48)
    d = writer.generate_sample(0, "val", 3, 32, 48)
    for key in ("image", "depth", "normal", "label"):
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.allclose(a["depth"], c["depth"]) and not np.allclose(a["depth"], d["depth"])


def test_value_ranges_and_invalid_pixels(views):
    for v in views:
        valid = v["depth"] > 0
        assert 0.0 < (~valid).mean() < 0.1
        assert np.all((v["label"] == -1) == ~valid) and np.all((np.abs(v["normal"]).sum(-1) == 0) == ~valid)
        assert v["depth"][valid].min() > 0.3 and v["depth"].max() <= 10.0
        np.testing.assert_allclose(np.linalg.norm(v["normal"][valid], axis=-1), 1.0, atol=1e-5)
        assert v["label"].min() >= -1 and v["label"].max() <= 12
        assert v["image"].min() >= 0 and v["image"].max() <= 1 and v["image"].std() > 0.05
    classes = np.unique(np.concatenate([v["label"].ravel() for v in views]))
    assert {2, 4, 11} <= set(classes.tolist()) and len(classes) >= 8


def _uniform_3x3(a):
    """True where the 3x3 neighbourhood of a (H, W) array holds one value (border False)."""
    out = np.zeros(a.shape, bool)
    c = a[1:-1, 1:-1]
    same = np.ones(c.shape, bool)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            same &= a[1 + dy : a.shape[0] - 1 + dy, 1 + dx : a.shape[1] - 1 + dx] == c
    out[1:-1, 1:-1] = same
    return out


def test_normals_recomputed_from_depth_agree_on_planar_pixels(views):
    """Back-project z-depth, cross the finite differences: the stored normals (MTAN axes) must match."""
    angles = []
    for v in views:
        depth = v["clean_depth"]
        p = backproject(depth, intrinsics(*depth.shape))
        du, dv = p[:-1, 1:] - p[:-1, :-1], p[1:, :-1] - p[:-1, :-1]
        n = -np.cross(du, dv)
        n /= np.linalg.norm(n, axis=-1, keepdims=True)
        n = to_mtan_normals(n)
        jump = np.abs(np.diff(depth, axis=1))[:-1] / depth[:-1, :-1] > 0.05
        keep = _uniform_3x3(v["instance"])[:-1, :-1] & _uniform_3x3(v["clean_label"])[:-1, :-1] & ~jump
        keep &= v["depth"][:-1, :-1] > 0
        cos = (n * v["normal"][:-1, :-1]).sum(-1)[keep]
        angles.append(np.degrees(np.arccos(np.clip(cos, -1, 1))))
    angles = np.concatenate(angles)
    assert angles.size > 5000
    assert np.median(angles) < 2.0 and np.mean(angles < 5.0) > 0.9


def test_label_boundaries_coincide_with_depth_or_texture_edges(views):
    """Nearly every label change is a depth jump, a crease or a colour edge; elsewhere these are rare."""
    at_boundary, elsewhere = [], []
    for v in views:
        lab, depth, img, n = v["clean_label"], v["clean_depth"], v["clean_image"], v["normal"]
        valid = (v["depth"][:, 1:] > 0) & (v["depth"][:, :-1] > 0)
        boundary = lab[:, 1:] != lab[:, :-1]
        jump = np.abs(depth[:, 1:] - depth[:, :-1]) / depth[:, :-1] > 0.05
        crease = (n[:, 1:] * n[:, :-1]).sum(-1) < np.cos(np.radians(10))
        colour = np.abs(img[:, 1:] - img[:, :-1]).sum(-1) > 0.15
        edge = jump | crease | colour
        at_boundary.append(edge[boundary & valid])
        elsewhere.append(edge[~boundary & valid])
    assert np.mean(np.concatenate(at_boundary)) > 0.97
    assert np.mean(np.concatenate(elsewhere)) < 0.3


def test_dataset_reads_back_and_cache_is_reused(tiny_cache, monkeypatch):
    folder = writer.cache_dir(writer.set_params(**TINY), tiny_cache)
    meta = folder / writer.META
    assert json.loads(meta.read_text())["version"] == writer.GENERATOR_VERSION
    stamp = meta.stat().st_mtime_ns

    def boom(*a, **k):
        raise AssertionError("the cached set was regenerated")

    monkeypatch.setattr(writer, "write_set", boom)
    train = DATASETS.get("synthetic")(split="train", cache=tiny_cache, **TINY)
    val = SyntheticRooms(split="val", tasks=["normal"], cache=tiny_cache, **TINY)
    assert len(train) == 8 and len(val) == 4 and meta.stat().st_mtime_ns == stamp
    s = train[5]
    assert s["image"].shape == (3, 32, 48) and s["image"].dtype == torch.float32
    assert s["semantic"].shape == (32, 48) and s["semantic"].dtype == torch.int64
    assert s["depth"].shape == (1, 32, 48) and s["normal"].shape == (3, 32, 48)
    again = writer.generate_sample(0, "train", 5, 32, 48)
    np.testing.assert_array_equal(s["semantic"].numpy(), again["label"])
    np.testing.assert_allclose(s["depth"][0].numpy(), again["depth"])
    np.testing.assert_allclose(s["normal"].numpy().transpose(1, 2, 0), again["normal"], atol=1e-3)
    assert set(val[0]) == {"image", "index", "normal"}
    assert SyntheticRooms.task_info() == {"semantic": ("semantic", 13), "depth": ("depth", 1), "normal": ("normal", 3)}


def test_other_parameters_get_another_cache_folder():
    a = writer.cache_dir(writer.set_params(**TINY), "/c")
    assert a != writer.cache_dir(writer.set_params(**{**TINY, "seed": 1}), "/c")
    assert a.parent.as_posix() == "/c/synthetic"


def test_losing_the_rename_race_keeps_the_winners_set(tmp_path, monkeypatch):
    out = tmp_path / "set"
    real_rename = os.rename

    def rival_wins(src, dst):
        (out / "train").mkdir(parents=True)
        (out / writer.META).write_text("{}")
        real_rename(src, dst)

    monkeypatch.setattr(writer.os, "rename", rival_wins)
    assert writer.write_set(out, writer.set_params(2, 1, 16, 16, 0)) == out
    assert (out / writer.META).read_text() == "{}"
    assert [p.name for p in tmp_path.iterdir()] == ["set"]


def test_root_with_foreign_content_is_refused(tmp_path):
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(FileExistsError, match="data.root"):
        SyntheticRooms(root=tmp_path, **TINY)


def test_cli_writes_set_and_grid(tmp_path, capsys):
    out = tmp_path / "synth"
    assert cli(["--out", str(out), "--n-train", "3", "--n-val", "2", "--height", "24", "--width", "32"]) == 0
    assert (out / "grid.png").stat().st_size > 1000
    assert len(list((out / "val" / "image").glob("*.npy"))) == 2
    assert "3 train / 2 val" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli(["--out", str(out)])


# --- normal convention (MTAN's: channels (x, y, z) of the OpenCV frame, channel 0 = x) ----------
def test_to_mtan_normals_keeps_the_opencv_axes():
    n = np.random.default_rng(0).normal(size=(4, 5, 3))
    np.testing.assert_array_equal(to_mtan_normals(n), n)
    assert SyntheticRooms.NORMAL_X_CHANNEL == 0


def test_a_wall_seen_head_on_has_channel2_near_minus_one():
    """Camera turned to face the far wall (z = room depth): its normal (0, 0, -1) in the camera frame is
    channel 2; a side wall on the image's left faces right (+x, channel 0), on its right faces left."""
    scene = sample_scene(np.random.default_rng([0, 0, 3]))
    scene = dataclasses.replace(scene, rotation=look_rotation(0.0, 0.0, 0.0))
    v = render(scene, 48, 64, np.random.default_rng(1))
    far = scene.room[2] - scene.camera[2]
    wall = (v["clean_label"] == CLASS_ID["wall"]) & (np.abs(v["clean_depth"] - far) < 1e-3) & (v["depth"] > 0)
    assert wall.sum() > 50
    assert (v["normal"][wall][:, 2] < -0.8).all()
    assert (np.abs(v["normal"][wall][:, :2]) < 0.2).all()
    side = (np.abs(v["normal"][..., 0]) > 0.9) & (v["depth"] > 0)
    u = np.nonzero(side)[1] - (64 - 1) / 2
    assert side.sum() > 20 and (np.sign(v["normal"][side][:, 0]) == -np.sign(u)).mean() > 0.95


# --- an existing set must match the requested parameters -------------------------------------
def test_root_holding_a_set_with_other_parameters_is_refused(tmp_path):
    out = tmp_path / "set"
    writer.write_set(out, writer.set_params(2, 1, 16, 16, 0))
    assert len(SyntheticRooms(root=out, n_train=2, n_val=1, height=16, width=16)) == 2
    with pytest.raises(ValueError) as err:
        SyntheticRooms(root=out, n_train=3, n_val=1, height=16, width=16)
    msg = str(err.value)
    assert str(out) in msg and "'n_train': 2" in msg and "'n_train': 3" in msg
    assert "data.options to {n_train: 2, n_val: 1, height: 16, width: 16, seed: 0}" in msg and "data.root" in msg
    meta = json.loads((out / writer.META).read_text())
    (out / writer.META).write_text(json.dumps({**meta, "version": writer.GENERATOR_VERSION - 1}))
    with pytest.raises(ValueError, match="another generator version.*delete the folder"):
        SyntheticRooms(root=out, n_train=2, n_val=1, height=16, width=16)


def test_a_set_renamed_into_place_while_checking_is_used_not_refused(tmp_path, monkeypatch):
    """Between the first meta.json check and the non-empty-folder check a rival finishes the set."""
    params = writer.set_params(2, 1, 16, 16, 0)
    out = tmp_path / "set"
    real_finished, real_write = writer._finished, writer.write_set
    looks = []

    def rival_finishes_after_first_look(folder):
        looks.append(folder)
        if len(looks) == 1:
            real_write(out, params)  # the rival's rename lands right after our first look
            return False
        return real_finished(folder)

    def boom(*a, **k):
        raise AssertionError("generated again although a finished set was in place")

    monkeypatch.setattr(writer, "_finished", rival_finishes_after_first_look)
    monkeypatch.setattr(writer, "write_set", boom)
    assert writer.ensure_set(params, root=out) == out
    assert len(looks) >= 2



def test_parallel_generation_writes_the_same_files_as_sequential(tmp_path, monkeypatch):
    """Views are seeded one by one, so the process pool must not change a single byte."""
    import filecmp

    monkeypatch.setattr(writer, "POOL_MIN_PIXELS", 0)  # the pool normally starts for large sets only
    params = writer.set_params(6, 4, 16, 16, 3)
    for split, n in (("train", 6), ("val", 4)):
        writer._write_split(tmp_path / "seq", split, n, params, workers=1)
        writer._write_split(tmp_path / "pool", split, n, params, workers=2)
    for split in ("train", "val"):
        for name in ("image", "label", "depth", "normal"):
            a, b = tmp_path / "seq" / split / name, tmp_path / "pool" / split / name
            names = sorted(p.name for p in a.iterdir())
            assert len(names) == (6 if split == "train" else 4)
            assert names == sorted(p.name for p in b.iterdir())
            _, mismatch, errors = filecmp.cmpfiles(a, b, names, shallow=False)
            assert not mismatch and not errors, (split, name, mismatch)


def test_the_7_class_set_merges_the_drawn_classes_by_hand():
    from lhl.data.synthetic_rooms.label_sets import COARSE_7, LABEL_SETS, relabel
    from lhl.data.synthetic_rooms.scene import CLASSES

    # bed, books, wall, window, picture, void -> bed / sofa, small items, wall, wall hangings x2, void
    drawn = torch.tensor([[CLASS_ID["bed"], CLASS_ID["books"], -1], [CLASS_ID["wall"], CLASS_ID["window"], CLASS_ID["picture"]]])
    want = [[COARSE_7.index("bed / sofa"), COARSE_7.index("small items"), -1],
            [COARSE_7.index("wall"), COARSE_7.index("wall hangings"), COARSE_7.index("wall hangings")]]
    assert relabel(drawn, 7).tolist() == want
    assert relabel(drawn, 13) is drawn  # the drawn set reads as stored
    names, lookup = LABEL_SETS[7]
    assert sorted(set(lookup.tolist())) == list(range(7)) and len(lookup) == len(CLASSES)  # every class lands, none is empty
    assert [n for c, n in zip(CLASSES, lookup) if c in ("chair", "table", "furniture")] == [5, 5, 5]


def test_the_dataset_reads_either_label_set_from_one_generated_set(tiny_cache):
    fine = SyntheticRooms(split="train", cache=tiny_cache, **TINY)
    coarse = SyntheticRooms(split="train", cache=tiny_cache, classes=7, **TINY)
    assert fine.root == coarse.root  # the same files: the label set is applied on read
    assert len(coarse.CLASSES) == 7 and len(fine.CLASSES) == 13 and SyntheticRooms.CLASSES == fine.CLASSES
    from lhl.data.synthetic_rooms.label_sets import relabel

    for i in range(len(fine)):
        a, b = fine[i]["semantic"], coarse[i]["semantic"]
        assert torch.equal(relabel(a, 7), b) and int(b.max()) <= 6 and int(b.min()) >= -1
        assert torch.equal(fine[i]["depth"], coarse[i]["depth"])
    assert SyntheticRooms.task_info(classes=7)["semantic"] == ("semantic", 7)
    assert SyntheticRooms.task_info()["semantic"] == ("semantic", 13)
    with pytest.raises(ValueError, match=r"data.options.classes=5; choose one of \[7, 13\]"):
        SyntheticRooms(split="train", cache=tiny_cache, classes=5, **TINY)
