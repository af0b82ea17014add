"""Reader for the MTAN `.npy` layout shared by NYUv2 and Cityscapes: `{root}/{split}/{folder}/{i}.npy`.

One file per sample and modality; the image folder is `image/` (H, W, 3 in [0, 1]); a label
folder's name decides its kind: `label*` is semantic, `depth*` one channel, `normal*` three.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Mapping, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from lhl.core.errors import MissingInput
from lhl.data.checks import found_near
from lhl.data.validate import BadInput, MissingFile, check_array
from lhl.tasks import TASKS


def folder_kind(folder: str) -> str:
    """The label kind stored in an MTAN folder: semantic (`label*`), depth or normal."""
    for prefix, kind in (("label", "semantic"), ("depth", "depth"), ("normal", "normal")):
        if folder.startswith(prefix):
            return kind
    raise BadInput(
        f"MTAN folder '{folder}' has no known kind: name it label*, depth* or normal*"
    )


def _indices(folder: Path) -> list:
    """Sorted sample numbers of the `{i}.npy` files in one folder."""
    return sorted(int(p.stem) for p in folder.glob("*.npy") if p.stem.isdigit())


def _image(a: np.ndarray) -> np.ndarray:
    if a.dtype == np.uint8:
        a = a.astype(np.float32) / 255.0
    return np.ascontiguousarray(a.astype(np.float32, copy=False).transpose(2, 0, 1))


def _expected_channels(kind: str):
    """Channels the last axis of a field's array must have (None: any; a 2-D array counts as one)."""
    return 3 if kind == "image" else TASKS.get(kind).array_channels


class MTANNpyDataset(Dataset):
    """Samples `{"image", "index", <task>...}` from an MTAN `.npy` folder, in the lhl label format.

    `folders` maps each task name to its folder (e.g. {"semantic": "label"} for NYUv2,
    {"semantic": "label_19"} for Cityscapes); only the requested `tasks` are loaded.
    """

    def __init__(
        self,
        root,
        split: str,
        tasks: Sequence[str],
        folders: Mapping[str, str],
        dataset_name: str,
        config_key: str = "data.root",
        fix: Optional[str] = None,
        obtain: Optional[str] = None,
    ):
        self.root = Path(root)
        self.split = split
        self.dataset_name = dataset_name
        self.tasks = list(tasks)
        fix = fix or f"set {config_key}=<folder holding {split}/image/0.npy> or LHL_DATA"
        #: one line on how to get and prepare the data, ending every missing / malformed data error
        self.obtain = obtain or "re-create the MTAN layout (lhl data convert-...)"
        split_dir = self.root / split
        for path in (self.root, split_dir, split_dir / "image"):
            if not path.is_dir():
                raise MissingInput(
                    f"{dataset_name}: folder {path} not found (config key {config_key}={self.root}); "
                    f"{found_near(path)}; fix: {fix}; get the data: {self.obtain}"
                )
        unknown = [t for t in self.tasks if t not in folders]
        if unknown:
            raise BadInput(
                f"{dataset_name}: unknown task(s) {unknown} in the tasks list; "
                f"choose from {sorted(folders)}"
            )
        self.kinds: Dict[str, str] = {t: folder_kind(folders[t]) for t in self.tasks}
        self.dirs: Dict[str, Path] = {"image": split_dir / "image"}
        self.dirs.update({t: split_dir / folders[t] for t in self.tasks})
        self.indices = _indices(self.dirs["image"])
        if not self.indices:
            raise MissingInput(
                f"{dataset_name}: no {{i}}.npy files in {self.dirs['image']} "
                f"(config key {config_key}={self.root}); {found_near(self.dirs['image'])}; fix: {fix}; "
                f"get the data: {self.obtain}"
            )
        for task in self.tasks:
            folder = self.dirs[task]
            found = _indices(folder) if folder.is_dir() else []
            if found != self.indices and folder.is_dir():
                lacking = sorted(set(self.indices) - set(found))
                extra = sorted(set(found) - set(self.indices))
                first = (f"{folder / f'{lacking[0]}.npy'} is missing" if lacking
                         else f"{folder / f'{extra[0]}.npy'} has no image {self.dirs['image'] / f'{extra[0]}.npy'}")
                raise MissingFile(
                    f"{dataset_name}: {first}: field '{task}' holds {len(found)} .npy files, the image folder "
                    f"{len(self.indices)} ({len(lacking)} missing, {len(extra)} without an image); fix: re-convert "
                    f"or re-copy the {split} split completely; get the data: {self.obtain}"
                )
            if found != self.indices:
                what = f"folder {folder} not found ({found_near(folder)})"
                raise MissingInput(
                    f"{dataset_name}: {what} (task '{task}'); fix: re-convert or re-copy the {split} split "
                    f"completely; get the data: {self.obtain}"
                )

    def __len__(self) -> int:
        return len(self.indices)

    def _load(self, path: Path, kind: str, hw=None) -> np.ndarray:
        """One file, checked: unreadable files and wrong shapes name the file, field and fix."""
        try:
            a = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as err:
            raise BadInput(
                f"{self.dataset_name}: cannot read {path} ({err}); the file is corrupt or not a "
                f".npy array: re-convert or re-copy it; get the data: {self.obtain}"
            ) from None
        want = _expected_channels(kind)
        channels = 1 if a.ndim == 2 else (a.shape[-1] if a.ndim == 3 else None)
        if channels is None or (want is not None and channels != want) or (hw and a.shape[:2] != hw):
            expect = f"(H, W{', ' + str(want) if want and want > 1 else ''})"
            raise BadInput(
                f"{self.dataset_name}: {path} has shape {a.shape}, expected {expect}"
                f"{' with H, W = ' + str(hw) if hw else ''} for the {kind} field; fix: re-convert "
                f"the dataset into the MTAN layout; get the data: {self.obtain}"
            )
        classes = getattr(self, "file_classes", None) or len(getattr(self, "CLASSES", ()) or ()) or None
        check_array(path, kind, kind, a, classes if kind == "semantic" else None, self.dataset_name)
        return a

    def __getitem__(self, item: int) -> dict:
        i = self.indices[item]
        name = f"{i}.npy"
        image = self._load(self.dirs["image"] / name, "image")
        sample = {"image": torch.from_numpy(_image(image)), "index": i}
        for task in self.tasks:
            kind = self.kinds[task]
            a = self._load(self.dirs[task] / name, kind, image.shape[:2])
            sample[task] = TASKS.get(kind).label_from_array(a)
        return sample
