"""Cityscapes (MTAN layout) and Taskonomy readers, and the scalar task type, on hand-made files."""
import math

import numpy as np
import pytest
import torch
from PIL import Image

from lhl.data.sources.cityscapes import Cityscapes
from lhl.data.sources.taskonomy import Taskonomy, decode_depth, decode_normal, decode_semantic
from lhl.core.registry import DATASETS, TASKS
from lhl.tasks.scalar import ScalarMetric, ScalarTask


# --- Cityscapes --------------------------------------------------------------------------------
def _write_cityscapes(root, split="train", n=2, h=4, w=8):
    rng = np.random.default_rng(0)
    for i in range(n):
        d = root / split
        for f in ("image", "label_7", "label_19", "depth"):
            (d / f).mkdir(parents=True, exist_ok=True)
        np.save(d / "image" / f"{i}.npy", rng.random((h, w, 3)).astype(np.float32))
        l19 = np.full((h, w), 13.0, np.float32)
        l19[0, 0] = -1
        np.save(d / "label_19" / f"{i}.npy", l19)
        np.save(d / "label_7" / f"{i}.npy", np.full((h, w), 6.0, np.float32))
        np.save(d / "depth" / f"{i}.npy", np.full((h, w, 1), 0.25 * (i + 1), np.float32))


def test_cityscapes_reads_19_and_7_classes(tmp_path):
    _write_cityscapes(tmp_path)
    ds = Cityscapes(tmp_path, "train", tasks=("semantic", "depth"))
    assert len(ds) == 2 and DATASETS.get("cityscapes") is Cityscapes
    s = ds[1]
    assert s["image"].shape == (3, 4, 8) and s["image"].dtype == torch.float32
    assert s["semantic"].dtype == torch.int64 and s["semantic"][0, 0] == -1 and s["semantic"][1, 1] == 13
    assert s["depth"].shape == (1, 4, 8) and torch.allclose(s["depth"], torch.full((1, 4, 8), 0.5))
    s7 = Cityscapes(tmp_path, "train", tasks=("semantic",), classes=7)[0]
    assert (s7["semantic"] == 6).all() and "depth" not in s7


def test_cityscapes_task_info_and_errors(tmp_path, monkeypatch):
    assert Cityscapes.task_info() == {"semantic": ("semantic", 19), "depth": ("depth", 1)}
    assert Cityscapes.task_info(classes=7)["semantic"] == ("semantic", 7)
    with pytest.raises(ValueError, match="classes"):
        Cityscapes.task_info(classes=5)
    _write_cityscapes(tmp_path)
    with pytest.raises(ValueError, match="7 or 19"):
        Cityscapes(tmp_path, "train", classes=20)
    with pytest.raises(TypeError, match="classes"):
        Cityscapes(tmp_path, "train", colour=True)
    with pytest.raises(FileNotFoundError, match="cityscapes.*data.root"):
        Cityscapes(tmp_path / "nope", "train")
    monkeypatch.setenv("LHL_DATA", str(tmp_path / "data"))
    _write_cityscapes(tmp_path / "data" / "cityscapes", split="val", n=1)
    assert len(Cityscapes(split="val")) == 1


# --- Taskonomy ---------------------------------------------------------------------------------
def _png(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def _name(point, view, domain):
    return f"point_{point}_view_{view}_domain_{domain}.png"


def _write_building(root, b="house", stems=((0, 0), (1, 2)), skip=()):
    """Two samples; sample k has depth 512*(k+1) units except pixel (0,0) = 65535."""
    for k, (p, v) in enumerate(stems):
        base = root / b
        rgb = np.full((4, 6, 3), 10 * (k + 1), np.uint8)
        _png(base / "rgb" / _name(p, v, "rgb"), rgb)
        depth = np.full((4, 6), 512 * (k + 1), np.uint16)
        depth[0, 0] = 65535
        depth[0, 1] = 256
        if "depth_zbuffer" not in skip:
            _png(base / "depth_zbuffer" / _name(p, v, "depth_zbuffer"), depth)
        normal = np.zeros((4, 6, 3), np.uint8)
        normal[...] = (255, 128, 0)
        normal[1, 1] = (127, 127, 127)
        _png(base / "normal" / _name(p, v, "normal"), normal)
        sem = np.full((4, 6), k + 1, np.uint8)
        sem[0, 2] = 0
        sem[0, 3] = 17
        if "segment_semantic" not in skip:
            _png(base / "segment_semantic" / _name(p, v, "segment_semantic"), sem)
        edge = np.zeros((4, 6), np.uint16)
        edge[0, 0], edge[0, 1] = 65535, 32768
        _png(base / "edge_texture" / _name(p, v, "edge_texture"), edge)
        _png(base / "keypoints2d" / _name(p, v, "keypoints2d"), edge[::-1].copy())
    # a depth file without an rgb partner is ignored
    _png(root / b / "depth_zbuffer" / _name(9, 9, "depth_zbuffer"), np.zeros((4, 6), np.uint16))


ALL = ("semantic", "depth", "normal", "edge", "keypoints")


def test_taskonomy_decoders_by_hand():
    d = decode_depth(np.array([[512, 1024, 65535, 256, 0]], np.uint16))
    np.testing.assert_allclose(d, [[1.0, 2.0, 0.0, 0.5, 0.0]])
    n = decode_normal(np.array([[[255, 128, 0], [127, 127, 127], [255, 255, 255]]], np.uint8),
                      valid=np.array([[True, True, False]]))
    np.testing.assert_allclose(n[0, 0], [1.0, 128 / 255 * 2 - 1, -1.0], atol=1e-6)
    assert (n[0, 1] == 0).all() and (n[0, 2] == 0).all()
    np.testing.assert_array_equal(decode_semantic(np.array([[0, 1, 17]], np.uint8)), [[-1, 0, 16]])
    with pytest.raises(ValueError, match="semantic_classes"):
        decode_semantic(np.array([[18]], np.uint8), source="x.png")


def test_taskonomy_sample_matching_and_decoding(tmp_path):
    _write_building(tmp_path)
    ds = Taskonomy(tmp_path, "train", tasks=ALL, buildings={"train": ["house"], "val": []})
    assert len(ds) == 2 and DATASETS.get("taskonomy") is Taskonomy
    s = ds[1]  # stems sorted: point_0_view_0, point_1_view_2 -> k = 1 is the second
    assert torch.allclose(s["image"], torch.full((3, 4, 6), 20 / 255))
    assert s["depth"].shape == (1, 4, 6)
    assert s["depth"][0, 0, 0] == 0 and s["depth"][0, 0, 1] == 0.5 and s["depth"][0, 2, 2] == 2.0
    assert s["normal"].shape == (3, 4, 6)
    assert (s["normal"][:, 0, 0] == 0).all(), "invalid depth masks the normal"
    assert (s["normal"][:, 1, 1] == 0).all(), "grey 127 decodes to ~zero length: invalid"
    assert torch.allclose(s["normal"][:, 2, 2], torch.tensor([1.0, 128 / 255 * 2 - 1, -1.0]), atol=1e-6)
    assert s["semantic"].dtype == torch.int64
    assert s["semantic"][0, 2] == -1 and s["semantic"][0, 3] == 16 and s["semantic"][3, 5] == 1
    assert s["edge"].shape == (1, 4, 6) and s["edge"][0, 0, 0] == 1.0
    assert math.isclose(float(s["edge"][0, 0, 1]), 32768 / 65535, rel_tol=1e-6)
    assert s["keypoints"][0, 3, 0] == 1.0 and s["keypoints"][0, 0, 0] == 0.0


def test_taskonomy_missing_domain_split_file_and_resize(tmp_path):
    _write_building(tmp_path, "a")
    _write_building(tmp_path, "b", skip=("segment_semantic",))
    with pytest.raises(FileNotFoundError, match="segment_semantic.*drop_incomplete"):
        Taskonomy(tmp_path, "train", tasks=("semantic",), buildings={"train": ["a", "b"]})
    ds = Taskonomy(tmp_path, "train", tasks=("semantic",), buildings={"train": ["a", "b"]}, drop_incomplete=True)
    assert len(ds) == 2
    (tmp_path / "split.csv").write_text("id,train,val,test\na,0,1,0\nb,1,0,0\n")
    val = Taskonomy(tmp_path, "val", tasks=("depth",), split_file=tmp_path / "split.csv", size=[8, 12])
    assert len(val) == 2
    s = val[0]
    assert s["image"].shape == (3, 8, 12) and s["depth"].shape == (1, 8, 12)
    assert s["depth"][0, 0, 0] == 0 and s["depth"][0, 0, 2] == 0.5 and s["depth"][0, 5, 5] == 1.0
    with pytest.raises(ValueError, match="buildings"):
        Taskonomy(tmp_path, "train", tasks=("depth",))
    with pytest.raises(ValueError, match="unknown task"):
        Taskonomy(tmp_path, "train", tasks=("vanishing_point",), buildings={"train": ["a"]})
    with pytest.raises(FileNotFoundError, match="building 'zz'"):
        Taskonomy(tmp_path, "train", tasks=("depth",), buildings={"train": ["zz"]})
    info = Taskonomy.task_info()
    assert info["edge"] == ("scalar", 1) and info["keypoints"] == ("scalar", 1)
    assert info["semantic"] == ("semantic", 17) and Taskonomy.task_info(semantic_classes=18)["semantic"][1] == 18


# --- scalar task -------------------------------------------------------------------------------
def test_scalar_task_loss_and_pseudo_label():
    task = TASKS.get("scalar")(name="edge", channels=1)
    assert isinstance(task, ScalarTask) and task.main_metric == "abs_err"
    pred = torch.tensor([[[[0.0, 1.0], [0.5, 0.25]]]])
    target = torch.tensor([[[[1.0, 1.0], [float("nan"), 0.0]]]])
    loss_map, valid = task.pixel_loss(task.activate(pred), target)
    assert valid.tolist() == [[[True, True], [False, True]]]
    assert torch.allclose(task.loss(pred, target), torch.tensor((1.0 + 0.0 + 0.25) / 3))
    zero_target = torch.zeros_like(pred)
    assert torch.allclose(task.loss(pred, zero_target), torch.tensor(1.75 / 4)), "0 is a valid label"
    p = pred.clone().requires_grad_(True)
    assert not task.pseudo_label(p).requires_grad


def test_scalar_metric_global_and_mtan():
    m = ScalarTask("edge", 1).metric()
    m.update(torch.zeros(1, 1, 1, 2), torch.tensor([[[[1.0, 3.0]]]]))
    m.update(torch.zeros(1, 1, 1, 2), torch.tensor([[[[2.0, float("nan")]]]]))
    assert math.isclose(m.compute()["abs_err"].item(), 6.0 / 3, rel_tol=1e-6)
    b = ScalarMetric(reduction="mtan")
    b.update(torch.zeros(1, 1, 1, 2), torch.tensor([[[[1.0, 3.0]]]]))
    b.update(torch.zeros(1, 1, 1, 2), torch.tensor([[[[2.0, float("nan")]]]]))
    assert math.isclose(b.compute()["abs_err"].item(), (2.0 + 2.0) / 2, rel_tol=1e-6)
    with pytest.raises(ValueError, match="reduction"):
        ScalarMetric(reduction="median")


def test_scalar_colourise_grey():
    rgb = ScalarTask("edge", 1).colourise(torch.tensor([[[0.0, 0.5, 1.0, float("nan")]]]), is_label=True)
    assert rgb.shape == (1, 4, 3) and rgb.dtype == np.uint8
    assert (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()
    assert rgb[0, 0, 0] == 0 and rgb[0, 2, 0] == 255 and 120 <= rgb[0, 1, 0] <= 135 and rgb[0, 3, 0] == 0


# --- conventions, options and error messages -------------------------------------------------------
def test_cityscapes_missing_data_error_says_how_to_get_it(tmp_path):
    (tmp_path / "leftImg8bit").mkdir()
    with pytest.raises(FileNotFoundError) as err:
        Cityscapes(tmp_path / "cityscapes", "train")
    msg = str(err.value)
    assert str(tmp_path / "cityscapes") in msg and "leftImg8bit/" in msg
    assert "lorenmt/mtan" in msg and "lhl data convert-cityscapes" in msg
    assert Cityscapes.DEPTH_IS_INVERSE is True


def test_taskonomy_normal_frame_and_relative_split_file(tmp_path):
    assert Taskonomy.NORMAL_X_CHANNEL == 0
    _write_building(tmp_path, "a")
    (tmp_path / "split.csv").write_text("id,train,val,test\na,1,0,0\n")
    ds = Taskonomy(tmp_path, "train", tasks=("depth",), split_file="split.csv")
    assert len(ds) == 2
    with pytest.raises(FileNotFoundError) as err:
        Taskonomy(tmp_path, "train", tasks=("depth",), split_file="train_val_test_tiny.csv")
    msg = str(err.value)
    assert str(tmp_path / "train_val_test_tiny.csv") in msg and "split.csv" in msg and "a/" in msg
    assert "data.options.buildings" in msg


def test_taskonomy_missing_data_errors_name_path_contents_and_domains(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        Taskonomy(tmp_path / "taskonomy", "train", tasks=("depth", "normal"), buildings={"train": ["a"]})
    msg = str(err.value)
    assert str(tmp_path / "taskonomy") in msg and "data.root" in msg and "is empty" in msg
    assert "StanfordVL/taskonomy" in msg and "rgb, depth_zbuffer, normal" in msg
    _write_building(tmp_path, "a", skip=("segment_semantic",))
    with pytest.raises(FileNotFoundError) as err:
        Taskonomy(tmp_path, "train", tasks=("semantic",), buildings={"train": ["a", "b"]})
    msg = str(err.value)
    assert str(tmp_path / "b" / "rgb") in msg and "a/" in msg and "segment_semantic" in msg
    with pytest.raises(FileNotFoundError) as err:
        Taskonomy(tmp_path, "train", tasks=("semantic",), buildings={"train": ["a"]})
    msg = str(err.value)
    assert "segment_semantic/point_0_view_0_domain_segment_semantic.png" in msg
    assert f"nearest existing folder, {tmp_path / 'a'}," in msg and "depth_zbuffer/" in msg


def test_taskonomy_index_tasks_decide_completeness_but_not_what_is_loaded(tmp_path):
    _write_building(tmp_path, "a", stems=((0, 0), (1, 1), (2, 2)))
    (tmp_path / "a" / "segment_semantic" / _name(1, 1, "segment_semantic")).unlink()
    kw = dict(buildings={"train": ["a"]}, drop_incomplete=True)
    assert len(Taskonomy(tmp_path, "train", tasks=("depth",), **kw)) == 3
    ds = Taskonomy(tmp_path, "train", tasks=("depth",), index_tasks=["semantic", "depth"], **kw)
    assert [s for _, s in ds.samples] == ["point_0_view_0", "point_2_view_2"]
    assert set(ds[1]) == {"image", "index", "depth"}
    with pytest.raises(FileNotFoundError, match="point_1_view_1"):
        Taskonomy(tmp_path, "train", tasks=("depth",), index_tasks=["semantic"], buildings={"train": ["a"]})
    with pytest.raises(ValueError, match="vanishing_point"):
        Taskonomy(tmp_path, "train", tasks=("depth",), index_tasks=["vanishing_point"], **kw)
