"""Writes the bad-input corpus beside this file (run once; the files are committed):

  base/<source>/...           a tiny valid set per source (3 train + 2 val samples, 8x8)
  cases/<source>/<case>/...   the files a case puts over (or beside) the base set
  cases.json                  per case: source, config overrides, files to delete, what its error must say

`tests/test_bad_inputs.py` copies the base set, applies the case and checks the one error it gets.
    python tests/bad_inputs/make_corpus.py
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
H = W = 8
N = {"train": 3, "val": 2}
MTAN = {  # source -> {task: folder}, classes, sequence
    "nyuv2": ({"semantic": "label", "depth": "depth", "normal": "normal"}, 13, "nyu_s1"),
    "cityscapes": ({"semantic": "label_19", "depth": "depth"}, 19, "cityscapes19_s1"),
    "synthetic": ({"semantic": "label", "depth": "depth", "normal": "normal"}, 13, "synthetic_small_s1"),
}


def good(kind: str, rng, classes: int = 13) -> np.ndarray:
    if kind == "image":
        return rng.random((H, W, 3)).astype(np.float32)
    if kind == "semantic":
        return rng.integers(-1, classes, (H, W)).astype(np.int8 if classes < 100 else np.int16)
    if kind == "depth":
        return (rng.random((H, W, 1)) * 5 + 0.5).astype(np.float32)
    n = rng.normal(size=(H, W, 3)).astype(np.float32)
    return n / np.linalg.norm(n, axis=-1, keepdims=True)


def kind_of(folder: str) -> str:
    return "semantic" if folder.startswith("label") else folder


def write_mtan(source: str) -> None:
    folders, classes, _ = MTAN[source]
    root = HERE / "base" / source
    rng = np.random.default_rng(0)
    for split, n in N.items():
        for folder in ["image", *folders.values()]:
            (root / split / folder).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                np.save(root / split / folder / f"{i}.npy", good(kind_of(folder), rng, classes))
    if source == "synthetic":  # a set made by lhl: its parameters
        (root / "meta.json").write_text(json.dumps({"n_train": 3, "n_val": 2, "height": H, "width": W, "seed": 0,
                                                    "version": 2}, indent=1))


def put(source: str, case: str, rel: str, array: np.ndarray) -> str:
    path = HERE / "cases" / source / case / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, array)
    return rel


def mtan_cases(source: str) -> list:
    folders, classes, seq = MTAN[source]
    sem = folders["semantic"]
    rng = np.random.default_rng(1)
    out = []

    def case(name, expect, files=(), delete=(), overrides=()):
        out.append({"source": source, "case": name, "seq": seq, "files": list(files), "delete": list(delete),
                    "overrides": list(overrides), "expect": expect})

    lab = good("semantic", rng, classes)
    lab[2, 3] = classes + 4
    case("class_id_out_of_range", [f"train/{sem}/1.npy", f"class id {classes + 4} is out of range", "fix:"],
         [put(source, "class_id_out_of_range", f"train/{sem}/1.npy", lab)])
    d = good("depth", rng)
    d[0, 0, 0], d[1, 1, 0] = np.nan, np.inf
    case("nan_depth", ["val/depth/0.npy", "field 'depth'", "2 NaN or infinite", "fix: mark a missing depth with 0"],
         [put(source, "nan_depth", "val/depth/0.npy", d)])
    fl = lab.astype(np.float32) + 0.5
    case("wrong_dtype_label", [f"train/{sem}/2.npy", "fractional values", "fix: store integer class ids"],
         [put(source, "wrong_dtype_label", f"train/{sem}/2.npy", np.clip(fl, 0, classes - 1))])
    case("wrong_dtype_depth", ["train/depth/0.npy", "depth of dtype uint16", "fix: store depth in metres as float32"],
         [put(source, "wrong_dtype_depth", "train/depth/0.npy", (good("depth", rng) * 512).astype(np.uint16))])
    case("image_0_255_floats", ["train/image/1.npy", "not in [0, 1]", "fix: divide by 255"],
         [put(source, "image_0_255_floats", "train/image/1.npy", good("image", rng) * 255)])
    case("image_label_size_mismatch", [f"train/{sem}/0.npy", "has shape (6, 8)", "H, W = (8, 8)", "fix:"],
         [put(source, "image_label_size_mismatch", f"train/{sem}/0.npy", good("semantic", rng, classes)[:6])])
    case("label_folder_one_file_less", [f"train/{sem}/2.npy is missing", "field 'semantic'", "fix: re-convert"],
         delete=[f"train/{sem}/2.npy"])
    case("empty_split", ["val/image", "no {i}.npy files", "fix:"],
         delete=[f"val/{f}/{i}.npy" for f in ["image", *folders.values()] for i in range(N["val"])])
    case("missing_split", ["val", "not found", "fix:"], delete=["val"])
    case("fewer_images_than_phases", ["train", "the train split has 1 image(s), fewer than the 2 phases", "fix:"],
         delete=[f"train/{f}/{i}.npy" for f in ["image", *folders.values()] for i in (1, 2)],
         overrides=["sequence.tasks=[semantic,depth]"])
    if "normal" in folders:
        case("zero_length_normals", ["train/normal/1.npy", "every normal is zero-length", "fix:"],
             [put(source, "zero_length_normals", "train/normal/1.npy", np.zeros((H, W, 3), np.float32))])
        case("normals_as_image", ["val/normal/1.npy", "no negative component", "fix: decode to unit vectors"],
             [put(source, "normals_as_image", "val/normal/1.npy", (good("normal", rng) + 1) / 2)])
        case("nan_normals", ["train/normal/0.npy", "NaN or infinite", "fix:"],
             [put(source, "nan_normals", "train/normal/0.npy", np.full((H, W, 3), np.nan, np.float32))])
        case("task_the_dataset_lacks", ["sequence.tasks", "edge", "fix:"], overrides=["sequence.tasks=[semantic,edge]"])
    else:
        case("task_the_dataset_lacks", ["sequence.tasks", "normal", "fix:"], overrides=["sequence.tasks=[semantic,normal]"])
    return out


def png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def write_taskonomy() -> list:
    root = HERE / "base" / "taskonomy"
    rng = np.random.default_rng(2)
    for b, n in (("bldA", 3), ("bldB", 2)):
        for i in range(n):
            stem = f"point_{i}_view_0"
            png(root / b / "rgb" / f"{stem}_domain_rgb.png", rng.integers(0, 256, (H, W, 3), dtype=np.uint8))
            png(root / b / "segment_semantic" / f"{stem}_domain_segment_semantic.png",
                rng.integers(0, 18, (H, W), dtype=np.uint8))
            png(root / b / "depth_zbuffer" / f"{stem}_domain_depth_zbuffer.png",
                rng.integers(100, 3000, (H, W), dtype=np.uint16))
    over = ["data.options={buildings: {train: [bldA], val: [bldB]}, size: null, split_file: null}"]
    out = []

    def case(name, expect, delete=(), overrides=(), files=()):
        out.append({"source": "taskonomy", "case": name, "seq": "taskonomy_s1", "files": list(files),
                    "delete": list(delete), "expect": list(expect),
                    "overrides": over + ["sequence.tasks=[semantic,depth]", *overrides]})

    def put_png(case_name, rel, array):
        png(HERE / "cases" / "taskonomy" / case_name / rel, array)
        return rel

    rel = "bldA/segment_semantic/point_1_view_0_domain_segment_semantic.png"
    case("class_id_out_of_range", [rel, "field 'semantic'", "exceeds semantic_classes=17", "fix:"],
         files=[put_png("class_id_out_of_range", rel, np.full((H, W), 30, np.uint8))])
    rel = "bldA/depth_zbuffer/point_0_view_0_domain_depth_zbuffer.png"
    case("image_label_size_mismatch", [rel, "field 'depth'", "differs from the image's (8, 8)", "fix:"],
         files=[put_png("image_label_size_mismatch", rel, np.full((4, 4), 1000, np.uint16))])
    case("label_folder_one_file_less", ["bldA/depth_zbuffer/point_2_view_0_domain_depth_zbuffer.png", "fix:"],
         delete=["bldA/depth_zbuffer/point_2_view_0_domain_depth_zbuffer.png"])
    case("empty_split", ["bldB", "fix:"], delete=["bldB/rgb/point_0_view_0_domain_rgb.png", "bldB/rgb/point_1_view_0_domain_rgb.png"])
    case("missing_split", ["bldB", "fix"], delete=["bldB"])
    case("fewer_images_than_phases", ["fewer than the 2 phases", "fix:"],
         delete=[f"bldA/{d}/point_{i}_view_0_domain_{d}.png" for i in (1, 2) for d in ("rgb", "segment_semantic", "depth_zbuffer")])
    case("task_the_dataset_lacks", ["sequence.tasks", "fix"], overrides=["sequence.tasks=[semantic,albedo]"])
    return out


def main() -> None:
    for sub in ("base", "cases"):
        shutil.rmtree(HERE / sub, ignore_errors=True)
    cases = []
    for source in MTAN:
        write_mtan(source)
        cases += mtan_cases(source)
    cases += write_taskonomy()
    (HERE / "cases.json").write_text(json.dumps(cases, indent=1) + "\n")
    print(f"{len(cases)} cases")


if __name__ == "__main__":
    main()
