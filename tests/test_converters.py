"""Official-release converters: Cityscapes label mappings and disparity, NYUv2 .mat -> MTAN layout."""
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import io as sio

from lhl.data.convert import read_png, resize_nearest
from lhl.data.convert import cityscapes_official as cs
from lhl.data.convert import nyuv2_mat as nyu

SHARED = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "real"
CS_FIX = SHARED / "cityscapes" / "frankfurt_000000_000294"
NYU_FIX = SHARED / "nyuv2-test13"
needs_cs = pytest.mark.skipif(not (SHARED / "cityscapes").is_dir(), reason=f"{SHARED / 'cityscapes'} absent")
needs_nyu = pytest.mark.skipif(not NYU_FIX.is_dir(), reason=f"{NYU_FIX} absent")


# --- Cityscapes --------------------------------------------------------------------------------
def assert_only_border_disagreements(mapped, expected):
    """The fixture's PNGs were downsampled separately: the few disagreements (< 0.5 %) must sit on
    class borders, each explained by the expected label of a pixel within one."""
    bad = mapped != expected
    assert bad.mean() < 0.005
    padded = np.pad(expected, 1, constant_values=-9)
    h, w = expected.shape
    neighbours = np.stack([padded[1 + dy:h + 1 + dy, 1 + dx:w + 1 + dx] for dy in (-1, 0, 1) for dx in (-1, 0, 1)])
    assert (neighbours[:, bad] == mapped[bad]).any(axis=0).all()


def test_cityscapes_mappings_by_hand():
    ids = np.array([7, 8, 26, 0, 9, 33, 23, 24, 255, 29])
    np.testing.assert_array_equal(cs.map_label_ids(ids, 19), [0, 1, 13, -1, -1, 18, 10, 11, -1, -1])
    flat, vehicle, sky, human = (cs.CATEGORIES.index(c) for c in ("flat", "vehicle", "sky", "human"))
    np.testing.assert_array_equal(cs.map_label_ids(ids, 7),
                                  [flat, flat, vehicle, -1, flat, vehicle, sky, human, -1, vehicle])
    assert (flat, vehicle) == (0, 6)
    with pytest.raises(ValueError, match="7 or 19"):
        cs.map_label_ids(ids, 34)


def test_cityscapes_disparity_decoding():
    d = cs.decode_disparity(np.array([0, 1, 257, 32257], np.uint16))
    np.testing.assert_allclose(d, [0.0, 0.0, 1 / 256, 32256 / 65536])
    assert abs(d[-1] - 0.4922) < 1e-4, "the MTAN release's maximum"


@needs_cs
def test_cityscapes_train_ids_match_official_fixture():
    ids = read_png(Path(f"{CS_FIX}_gtFine_labelIds.png"))
    train = read_png(Path(f"{CS_FIX}_gtFine_labelTrainIds.png")).astype(np.int64)
    expected = np.where(train == 255, -1, train)
    mapped = cs.map_label_ids(ids, 19)
    # every labelId's dominant official trainId is the mapped one
    for lid in np.unique(ids):
        values, counts = np.unique(expected[ids == lid], return_counts=True)
        assert values[counts.argmax()] == cs.LABEL_TO_TRAIN[lid], lid
    assert_only_border_disagreements(mapped, expected)


def _official_tree(root, split, frames):
    """frames: {stem: (rgb, labelIds, disparity png)} under <root>/{leftImg8bit,gtFine,disparity}/split/city."""
    for stem, (rgb, ids, disp) in frames.items():
        city = stem.split("_")[0]
        for sub, suffix, arr in (("leftImg8bit", "leftImg8bit", rgb), ("gtFine", "gtFine_labelIds", ids),
                                 ("disparity", "disparity", disp)):
            p = root / sub / split / city / f"{stem}_{suffix}.png"
            p.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(arr).save(p)


def test_cityscapes_convert_resizes_and_maps(tmp_path):
    h, w = 8, 16
    ids = np.full((h, w), 7, np.uint8)
    ids[:, 8:] = 26
    ids[1::2, :] = 0  # odd rows void: nearest resize by 2 samples source rows 1, 3, 5, 7
    disp = np.full((h, w), 257, np.uint16)
    disp[:, :4] = 0
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[..., 0] = 255
    _official_tree(tmp_path / "src", "val", {"aachen_000000_000019": (rgb, ids, disp)})
    counts = cs.convert(tmp_path / "src", tmp_path / "out", size=(4, 8), splits=["val"])
    assert counts == {"val": 1}
    out = tmp_path / "out" / "val"
    l19, l7 = np.load(out / "label_19" / "0.npy"), np.load(out / "label_7" / "0.npy")
    assert l19.shape == (4, 8) and l19.dtype == np.float32 and (l19 == -1).all() and (l7 == -1).all()
    ids[1::2, :] = ids[0::2, :]
    _official_tree(tmp_path / "src2", "val", {"aachen_000000_000019": (rgb, ids, disp)})
    cs.convert(tmp_path / "src2", tmp_path / "out2", size=(4, 8), splits=["val"])
    out = tmp_path / "out2" / "val"
    l19, l7 = np.load(out / "label_19" / "0.npy"), np.load(out / "label_7" / "0.npy")
    np.testing.assert_array_equal(l19, np.repeat([[0] * 4 + [13] * 4], 4, axis=0))
    np.testing.assert_array_equal(l7, np.repeat([[0] * 4 + [6] * 4], 4, axis=0))
    depth = np.load(out / "depth" / "0.npy")
    assert depth.shape == (4, 8, 1)
    np.testing.assert_allclose(depth[..., 0], np.repeat([[0] * 2 + [1 / 256] * 6], 4, axis=0))
    image = np.load(out / "image" / "0.npy")
    assert image.shape == (4, 8, 3) and np.allclose(image[..., 0], 1.0) and np.allclose(image[..., 1:], 0.0)


@needs_cs
def test_cityscapes_cli_on_fixture(tmp_path):
    ids = read_png(Path(f"{CS_FIX}_gtFine_labelIds.png"))
    rgb = read_png(Path(f"{CS_FIX}_leftImg8bit.png"))
    disp = np.full(ids.shape, 1025, np.uint16)
    _official_tree(tmp_path / "src", "val", {"frankfurt_000000_000294": (rgb, ids, disp)})
    assert cs.cli(["--src", str(tmp_path / "src"), "--out", str(tmp_path / "out"), "--splits", "val"]) == 0
    out = tmp_path / "out" / "val"
    np.testing.assert_array_equal(np.load(out / "label_19" / "0.npy"), cs.map_label_ids(ids, 19))
    np.testing.assert_allclose(np.load(out / "image" / "0.npy"), rgb / 255.0, atol=1e-6)
    np.testing.assert_allclose(np.load(out / "depth" / "0.npy"), 4 / 256)


def test_cityscapes_missing_disparity_is_named(tmp_path):
    _official_tree(tmp_path, "train", {"ulm_000000_000019": (np.zeros((4, 4, 3), np.uint8),
                                                             np.zeros((4, 4), np.uint8),
                                                             np.zeros((4, 4), np.uint16))})
    (tmp_path / "disparity" / "train" / "ulm" / "ulm_000000_000019_disparity.png").unlink()
    with pytest.raises(FileNotFoundError, match="ulm_000000_000019_disparity.png"):
        cs.convert(tmp_path, tmp_path / "out", splits=["train"])
    with pytest.raises(FileNotFoundError, match="leftImg8bit"):
        cs.convert(tmp_path, tmp_path / "out", splits=["val"])


# --- NYUv2 -------------------------------------------------------------------------------------
def test_nyu_class_mapping_by_hand():
    assert len(nyu.NYU894_TO_13) == 895
    # void, wall, floor, ceiling, chair, table, book, books, bookshelf, window, picture, sofa
    raw = np.array([0, 21, 11, 4, 5, 19, 1, 85, 88, 59, 64, 83])
    np.testing.assert_array_equal(nyu.map_labels13(raw), [0, 12, 5, 3, 4, 10, 7, 2, 6, 13, 8, 9])
    assert set(np.unique(nyu.NYU894_TO_13)) == set(range(14))
    with pytest.raises(ValueError, match="0..894"):
        nyu.map_labels13(np.array([895]))


def test_nearest_resize_sampling():
    rows = resize_nearest(np.arange(480)[:, None], (288, 1))[:, 0]
    assert rows[:4].tolist() == [0, 2, 4, 5] and rows[-1] == 479


@needs_nyu
def test_label13_fixture_to_mtan():
    lab = read_png(NYU_FIX / "nyu_0001_label13.png")
    assert lab.shape == (480, 640) and lab.max() <= 13
    out = nyu.label13_to_mtan(lab)
    assert out.shape == (288, 384) and out.dtype == np.float32
    rows = np.floor((np.arange(288) + 0.5) * 480 / 288).astype(int)
    cols = np.floor((np.arange(384) + 0.5) * 640 / 384).astype(int)
    np.testing.assert_array_equal(out, lab[rows][:, cols].astype(np.float32) - 1)
    assert out.min() >= -1 and out.max() <= 12 and (out == -1).any() == (lab[rows][:, cols] == 0).any()


def test_normals_from_depth_floor_and_wall():
    h, w, f, cx, cy = 20, 30, 20.0, 15.0, -5.0
    v = np.arange(h, dtype=np.float64)[:, None].repeat(w, axis=1)
    floor = f / (v - cy)  # the plane y = 1 m below the camera (y down)
    n = nyu.normals_from_depth(floor, fx=f, fy=f, cx=cx, cy=cy)
    np.testing.assert_allclose(n, np.broadcast_to([0.0, -1.0, 0.0], n.shape), atol=1e-5)
    wall = np.full((h, w), 3.0)
    wall[0, 0] = 0.0
    n = nyu.normals_from_depth(wall, fx=f, fy=f, cx=cx, cy=cy)
    np.testing.assert_allclose(n[5:, 5:], np.broadcast_to([0.0, 0.0, -1.0], n[5:, 5:].shape), atol=1e-5)  # (x, y, z)
    assert (n[0, 0] == 0).all() and (n[0, 1] == 0).all() and (n[1, 0] == 0).all()


# raw class per frame (1-based k): wall, floor, void, chair, table -> 13-class - 1
RAW = {1: 21, 2: 11, 3: 0, 4: 5, 5: 19}
MTAN = {21: 11, 11: 4, 0: -1, 5: 3, 19: 9}


def _fake_release(tmp_path, h=24, w=32):
    n = len(RAW)
    images = np.zeros((h, w, 3, n), np.uint8)
    depths = np.zeros((h, w, n), np.float32)
    labels = np.zeros((h, w, n), np.uint16)
    for k, raw in RAW.items():
        images[..., 0, k - 1] = 10 * k
        depths[..., k - 1] = float(k)
        labels[..., k - 1] = raw
    sio.savemat(tmp_path / "labeled.mat", {"images": images, "depths": depths, "labels": labels})
    sio.savemat(tmp_path / "splits.mat", {"trainNdxs": np.array([[5], [1], [3]]), "testNdxs": np.array([[2], [4]])})
    return images, depths, labels


def _check_release(out, size):
    for split, ks in (("train", (1, 3, 5)), ("val", (2, 4))):
        assert sorted(p.name for p in (out / split / "label").iterdir()) == [f"{i}.npy" for i in range(len(ks))]
        for i, k in enumerate(ks):
            lab = np.load(out / split / "label" / f"{i}.npy")
            assert lab.shape == size and lab.dtype == np.float32 and (lab == MTAN[RAW[k]]).all()
            depth = np.load(out / split / "depth" / f"{i}.npy")
            assert depth.shape == (*size, 1) and np.allclose(depth, k)
            image = np.load(out / split / "image" / f"{i}.npy")
            assert image.shape == (*size, 3) and np.allclose(image[..., 0], 10 * k / 255, atol=1e-6)
            normal = np.load(out / split / "normal" / f"{i}.npy")
            assert normal.shape == (*size, 3)
            np.testing.assert_allclose(np.linalg.norm(normal, axis=-1), 1.0, atol=1e-5)
            assert (normal[..., 2] < 0).all(), "normals face the camera (z is channel 2)"


def test_nyu_convert_v5_mat_with_split(tmp_path):
    _fake_release(tmp_path)
    counts = nyu.convert(tmp_path / "labeled.mat", tmp_path / "splits.mat", tmp_path / "out", size=(12, 16))
    assert counts == {"train": 3, "val": 2}
    _check_release(tmp_path / "out", (12, 16))


def test_nyu_convert_v73_hdf5_and_cli(tmp_path):
    h5py = pytest.importorskip("h5py")
    images, depths, labels = _fake_release(tmp_path, h=288, w=384)
    with h5py.File(tmp_path / "v73.mat", "w") as f:  # MATLAB v7.3 stores arrays with axes reversed
        f["images"] = images.transpose(3, 2, 1, 0)
        f["depths"] = depths.transpose(2, 1, 0)
        f["labels"] = labels.transpose(2, 1, 0)
    args = ["--mat", str(tmp_path / "v73.mat"), "--splits", str(tmp_path / "splits.mat"), "--out", str(tmp_path / "o")]
    assert nyu.cli(args + ["--normals", "zeros"]) == 0
    assert (np.load(tmp_path / "o" / "val" / "normal" / "1.npy") == 0).all()
    assert (np.load(tmp_path / "o" / "val" / "label" / "1.npy") == MTAN[RAW[4]]).all()
    assert np.allclose(np.load(tmp_path / "o" / "train" / "depth" / "2.npy"), 5.0)


def test_nyu_bad_inputs_are_named(tmp_path):
    _fake_release(tmp_path)
    with pytest.raises(FileNotFoundError, match="nope.mat"):
        nyu.convert(tmp_path / "nope.mat", tmp_path / "splits.mat", tmp_path / "out")
    sio.savemat(tmp_path / "bad_splits.mat", {"trainNdxs": np.array([[1], [2]]), "testNdxs": np.array([[2], [9]])})
    with pytest.raises(ValueError, match="outside 1..5"):
        nyu.convert(tmp_path / "labeled.mat", tmp_path / "bad_splits.mat", tmp_path / "out")
    sio.savemat(tmp_path / "overlap.mat", {"trainNdxs": np.array([[1], [2]]), "testNdxs": np.array([[2]])})
    with pytest.raises(ValueError, match="overlap"):
        nyu.convert(tmp_path / "labeled.mat", tmp_path / "overlap.mat", tmp_path / "out")


# official trainId (0..18) -> category id (1..7: flat, construction, object, nature, sky, human,
# vehicle) from cityscapesScripts helpers/labels.py, written out independently of the converter
TRAIN_TO_CATEGORY_ID = (1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 5, 6, 6, 7, 7, 7, 7, 7, 7)


@needs_cs
def test_cityscapes_categories_match_official_train_ids_fixture():
    """7 categories two ways: official trainIds -> category table vs the converter's labelIds mapping."""
    ids = read_png(Path(f"{CS_FIX}_gtFine_labelIds.png"))
    train = read_png(Path(f"{CS_FIX}_gtFine_labelTrainIds.png")).astype(np.int64)
    lut = np.full(256, -1, np.int64)
    lut[:19] = np.array(TRAIN_TO_CATEGORY_ID) - 1
    expected = lut[train]
    mapped = cs.map_label_ids(ids, 7)
    labelled = train != 255
    assert labelled.mean() > 0.8 and set(np.unique(expected[labelled])) == set(range(7))
    assert ((mapped == expected)[labelled]).mean() > 0.995
    assert_only_border_disagreements(mapped, expected)


# --- stale output ------------------------------------------------------------------------------
def test_cityscapes_refuses_an_out_holding_an_earlier_conversion(tmp_path, capsys):
    frame = (np.zeros((4, 8, 3), np.uint8), np.full((4, 8), 7, np.uint8), np.full((4, 8), 257, np.uint16))
    _official_tree(tmp_path / "src", "val", {"ulm_000000_000019": frame})
    out = tmp_path / "out"
    (out / "val" / "image").mkdir(parents=True)
    np.save(out / "val" / "image" / "7.npy", np.zeros((4, 8, 3), np.float32))  # left by a larger conversion
    expect = r"val.*image/ \(1 files\) from an earlier conversion.*new or empty --out"
    with pytest.raises(FileExistsError, match=expect):
        cs.convert(tmp_path / "src", out, size=(4, 8), splits=["val"])
    with pytest.raises(SystemExit):
        cs.cli(["--src", str(tmp_path / "src"), "--out", str(out), "--splits", "val"])
    assert "earlier conversion" in capsys.readouterr().err
    assert sorted(p.name for p in (out / "val").iterdir()) == ["image"], "nothing was written"
    # an existing but empty --out, and other splits of a used one, are fine
    (tmp_path / "empty").mkdir()
    assert cs.convert(tmp_path / "src", tmp_path / "empty", size=(4, 8), splits=["val"]) == {"val": 1}
    _official_tree(tmp_path / "src", "train", {"ulm_000000_000019": frame})
    assert cs.convert(tmp_path / "src", out, size=(4, 8), splits=["train"]) == {"train": 1}


def test_nyu_refuses_an_out_holding_an_earlier_conversion(tmp_path, capsys):
    _fake_release(tmp_path)
    out = tmp_path / "out"
    (out / "train" / "label").mkdir(parents=True)
    np.save(out / "train" / "label" / "9.npy", np.zeros((2, 2), np.float32))
    with pytest.raises(FileExistsError, match=r"train.*earlier conversion"):
        nyu.convert(tmp_path / "labeled.mat", tmp_path / "splits.mat", out, size=(12, 16))
    args = ["--mat", str(tmp_path / "labeled.mat"), "--splits", str(tmp_path / "splits.mat"), "--out", str(out)]
    with pytest.raises(SystemExit):
        nyu.cli(args)
    assert "earlier conversion" in capsys.readouterr().err
    assert not (out / "val").exists() and not (out / "train" / "image").exists()
