"""MTAN .npy reader and NYUv2 source: shapes, dtypes, ignore labels, error messages, axis convention."""
from pathlib import Path

import numpy as np
import pytest
import torch

from lhl.data.sources import DATASETS
from lhl.data.sources.mtan_npy import MTANNpyDataset, folder_kind
from lhl.data.sources.nyuv2 import NYUv2

FIXTURE = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "real" / "nyuv2-scene" / "normal.png"


def _write(root: Path, split="train", n=2, h=4, w=5, depth_3d=False):
    rng = np.random.default_rng(0)
    for name in ("image", "label", "depth", "normal"):
        (root / split / name).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        np.save(root / split / "image" / f"{i}.npy", rng.random((h, w, 3)))
        lab = np.full((h, w), 3.0)
        lab[0, 0], lab[1, 1] = -1.0, 11.9999
        np.save(root / split / "label" / f"{i}.npy", lab)
        dep = np.full((h, w, 1) if depth_3d else (h, w), 2.5)
        dep[0, 0] = 0.0
        np.save(root / split / "depth" / f"{i}.npy", dep)
        nor = np.zeros((h, w, 3))
        nor[..., 0] = -1.0
        np.save(root / split / "normal" / f"{i}.npy", nor)


@pytest.mark.parametrize("depth_3d", [False, True])
def test_reader_shapes_dtypes_and_values(tmp_path, depth_3d):
    _write(tmp_path, depth_3d=depth_3d)
    ds = NYUv2(root=tmp_path, split="train")
    assert len(ds) == 2
    s = ds[1]
    assert s["index"] == 1
    assert s["image"].shape == (3, 4, 5) and s["image"].dtype == torch.float32
    assert s["semantic"].shape == (4, 5) and s["semantic"].dtype == torch.int64
    assert s["semantic"][0, 0] == -1 and s["semantic"][1, 1] == 12 and s["semantic"][2, 2] == 3
    assert s["depth"].shape == (1, 4, 5) and s["depth"].dtype == torch.float32
    assert s["depth"][0, 0, 0] == 0 and s["depth"][0, 1, 1] == 2.5
    assert s["normal"].shape == (3, 4, 5) and torch.all(s["normal"][0] == -1) and torch.all(s["normal"][1:] == 0)


def test_reader_loads_only_requested_tasks(tmp_path):
    _write(tmp_path)
    s = NYUv2(root=tmp_path, tasks=["depth"])[0]
    assert set(s) == {"image", "index", "depth"}


def test_generic_folders_for_cityscapes_style_layout(tmp_path):
    _write(tmp_path, split="val")
    (tmp_path / "val" / "label").rename(tmp_path / "val" / "label_19")
    ds = MTANNpyDataset(tmp_path, "val", ["seg19"], {"seg19": "label_19"}, dataset_name="cityscapes")
    assert ds[0]["seg19"].dtype == torch.int64
    assert folder_kind("label_7") == "semantic" and folder_kind("depth") == "depth"
    with pytest.raises(ValueError, match="label"):
        folder_kind("edges")


def test_missing_root_names_dataset_path_key_and_fix(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError) as err:
        NYUv2(root=missing)
    msg = str(err.value)
    assert "nyuv2" in msg and str(missing) in msg and "data.root" in msg and "LHL_DATA" in msg
    assert "convert-nyuv2" in msg


def test_default_root_follows_lhl_data(tmp_path, monkeypatch):
    _write(tmp_path / "nyuv2")
    monkeypatch.setenv("LHL_DATA", str(tmp_path))
    assert len(DATASETS.get("nyuv2")(split="train")) == 2


def test_count_mismatch_is_a_clear_error(tmp_path):
    _write(tmp_path, n=3)
    (tmp_path / "train" / "depth" / "2.npy").unlink()
    with pytest.raises(FileNotFoundError, match=r"depth.*2 .npy files.*3"):
        NYUv2(root=tmp_path, tasks=["depth"])


def test_unknown_task_and_option_rejected(tmp_path):
    _write(tmp_path)
    with pytest.raises(ValueError, match="edges"):
        NYUv2(root=tmp_path, tasks=["edges"])
    with pytest.raises(TypeError, match="height"):
        NYUv2(root=tmp_path, height=3)


def test_task_info_and_classes():
    assert NYUv2.task_info() == {"semantic": ("semantic", 13), "depth": ("depth", 1), "normal": ("normal", 3)}
    assert NYUv2.CLASSES[0] == "bed" and NYUv2.CLASSES[4] == "floor" and NYUv2.CLASSES[-1] == "window"
    assert len(NYUv2.CLASSES) == 13


@pytest.mark.skipif(not FIXTURE.exists(), reason=f"real NYUv2 fixture absent: {FIXTURE}")
def test_documented_normal_convention_matches_a_real_frame():
    """The display PNG, read back as the (x, y, z) array cv2 wrote it from (PIL's R, G, B reversed):
    channel 0 = x right (a door on the left faces right, +1), 1 = y down (table top -1), 2 = z (wall
    seen head on -1): the channel order the release and LibMTL assume when they negate channel 0."""
    from PIL import Image

    n = (np.asarray(Image.open(FIXTURE), dtype=np.float32) / 255 * 2 - 1)[..., ::-1]
    wall = np.median(n[100:200, 250:400].reshape(-1, 3), 0)
    table_top = np.median(n[380:430, 170:200].reshape(-1, 3), 0)
    left_door = np.median(n[100:250, 60:140].reshape(-1, 3), 0)
    assert wall[2] < -0.85 and table_top[1] < -0.85 and left_door[NYUv2.NORMAL_X_CHANNEL] > 0.85


def test_corrupt_file_and_wrong_shape_are_clear_errors(tmp_path):
    import numpy as np
    import pytest

    from lhl.data.sources.nyuv2 import NYUv2

    root = tmp_path / "nyu"
    for sub, arr in [("image", np.zeros((4, 6, 3), np.float32)), ("label", np.zeros((4, 6), np.float32)),
                     ("depth", np.ones((4, 6, 1), np.float32)), ("normal", np.zeros((4, 6, 3), np.float32))]:
        (root / "val" / sub).mkdir(parents=True)
        for i in range(2):
            np.save(root / "val" / sub / f"{i}.npy", arr)
    (root / "val" / "depth" / "1.npy").write_bytes(b"not a numpy file")
    np.save(root / "val" / "normal" / "0.npy", np.zeros((4, 6, 2), np.float32))
    np.save(root / "val" / "label" / "0.npy", np.zeros((5, 6), np.float32))
    ds = NYUv2(root=root, split="val", tasks=["depth"])
    with pytest.raises(ValueError, match=r"depth/1\.npy.*corrupt.*re-convert"):
        ds[1]
    with pytest.raises(ValueError, match=r"normal/0\.npy has shape \(4, 6, 2\).*normal field"):
        NYUv2(root=root, split="val", tasks=["normal"])[0]
    with pytest.raises(ValueError, match=r"label/0\.npy has shape \(5, 6\).*H, W = \(4, 6\)"):
        NYUv2(root=root, split="val", tasks=["semantic"])[0]
    assert ds[0]["depth"].shape == (1, 4, 6)


def test_nyuv2_flip_channel_default_and_no_options(tmp_path):
    _write(tmp_path)
    assert NYUv2.NORMAL_X_CHANNEL == 0  # MTAN's layout: (x, y, z), the release and LibMTL flip channel 0
    with pytest.raises(TypeError, match="nyuv2 takes no options"):
        NYUv2(root=tmp_path, normal_x_channel=0)


def test_missing_data_errors_show_what_is_there_and_how_to_get_it(tmp_path):
    parent = tmp_path / "data"
    (parent / "NYUv2_mtan").mkdir(parents=True)
    (parent / "notes.txt").write_text("x")
    with pytest.raises(FileNotFoundError) as err:
        NYUv2(root=parent / "nyuv2")
    msg = str(err.value)
    assert str(parent / "nyuv2") in msg and f"nearest existing folder, {parent}" in msg
    assert "NYUv2_mtan/" in msg and "notes.txt" in msg
    assert "lorenmt/mtan" in msg and "lhl data convert-nyuv2" in msg
    # the root exists but holds the archive's top folder: its entries are listed
    (parent / "NYUv2_mtan" / "train").mkdir()
    with pytest.raises(FileNotFoundError, match=r"NYUv2_mtan/val not found.*NYUv2_mtan, holds train/;.*convert-nyuv2"):
        NYUv2(root=parent / "NYUv2_mtan", split="val")
    # a task folder missing from an otherwise complete split
    _write(tmp_path / "nyu", n=2)
    for f in (tmp_path / "nyu" / "train" / "normal").iterdir():
        f.unlink()
    (tmp_path / "nyu" / "train" / "normal").rmdir()
    expect = r"train/normal not found.*train, holds depth/, image/, label/\).*task .normal.*get the data"
    with pytest.raises(FileNotFoundError, match=expect):
        NYUv2(root=tmp_path / "nyu", tasks=["normal"])
    # no samples: the image folder's (wrongly named) content is listed
    (tmp_path / "png" / "train" / "image").mkdir(parents=True)
    (tmp_path / "png" / "train" / "image" / "0.png").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=r"no \{i\}.npy files.*holds 0.png.*lorenmt/mtan"):
        NYUv2(root=tmp_path / "png")
