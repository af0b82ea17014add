"""The ten-task Taskonomy sequence: every task of `taskonomy10_s1` is offered by the reader, with
its task type and channels, on a tiny hand-made building."""
from __future__ import annotations

import numpy as np
import pytest
import yaml
from PIL import Image

from lhl.data.sources.taskonomy import Taskonomy
from lhl.tasks import build_task

SEQ = "experiments/seq/taskonomy10_s1.yaml"


def _png(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def _building(root, domains):
    base = root / "house"
    name = "point_0_view_0_domain_{}.png"
    _png(base / "rgb" / name.format("rgb"), np.full((4, 6, 3), 10, np.uint8))
    depth = np.full((4, 6), 1024, np.uint16)
    depth[0, 0] = 65535
    u16 = np.full((4, 6), 65535, np.uint16)
    u16[1, 1] = 0
    curv = np.zeros((4, 6, 3), np.uint8)
    curv[..., 0], curv[..., 1] = 255, 51
    arrays = {"segment_semantic": np.full((4, 6), 2, np.uint8), "depth_zbuffer": depth, "depth_euclidean": depth,
              "normal": np.full((4, 6, 3), (255, 128, 0), np.uint8), "reshading": np.full((4, 6), 51, np.uint8),
              "principal_curvature": curv}
    for d in domains:
        _png(base / d / name.format(d), arrays.get(d, u16))


def test_taskonomy10_tasks_load_with_their_types(tmp_path):
    from pathlib import Path

    seq = yaml.safe_load((Path(__file__).parent.parent / SEQ).read_text())
    tasks = seq["sequence"]["tasks"]
    assert len(tasks) == 10 and len(set(tasks)) == 10
    info = Taskonomy.task_info()
    assert all(t in info for t in tasks)
    from lhl.data.sources.taskonomy import DOMAINS
    _building(tmp_path, [DOMAINS[t] for t in tasks])
    s = Taskonomy(tmp_path, "train", tasks=tasks, buildings={"train": ["house"]})[0]
    for t in tasks:
        kind, channels = info[t]
        spec = build_task(kind, t, channels)
        assert spec.valid_mask(s[t][None]).shape == (1, 4, 6), t
        if kind != "semantic":
            assert s[t].shape == (channels, 4, 6), t
    assert info["curvature"] == ("scalar", 2) and info["depth_euclidean"] == ("depth", 1)
    assert s["depth_euclidean"][0, 0, 0] == 0 and s["depth_euclidean"][0, 1, 1] == pytest.approx(2.0)
    assert s["reshading"][0, 0, 0] == pytest.approx(0.2)
    assert s["curvature"][:, 0, 0].tolist() == pytest.approx([1.0, 0.2])
    assert s["occlusion"][0, 1, 1] == 0 and s["keypoints3d"][0, 0, 0] == 1.0
