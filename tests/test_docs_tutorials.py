"""The tutorials' code runs: every file a tutorial page shows (a fenced block with a `title="path"`)
is written where the page says (sources into an importable module, presets into a copy of the
presets folder), and the runs the page's commands start are made end to end at a tiny size."""
from __future__ import annotations

import importlib.util
import re
import shutil
import sys
from pathlib import Path

import pytest

from lhl.config import load_config
from lhl.engine.runner import run
from lhl.runs.results import Results

ROOT = Path(__file__).resolve().parents[1]
#: a ResNet-18 at a quarter of its width: the tutorials' runs in seconds
QUARTER_WIDTH = "model.timm_kwargs={channels: [16, 32, 64, 128]}"


def TINY_STRIPES(tmp_path):  # noqa: N802 (a constant made per test folder)
    """The tutorial's sequence at a tiny size: 16 views, 2 steps a phase, a quarter-width network."""
    return [f"run.out_dir={tmp_path / 'runs'}", "data.options={n_train: 16, n_val: 8, size: 32}",
            "data.batch_size=4", "train.epochs=1", "train.max_steps=2", "train.accelerator=cpu",
            "train.progress_bar=false", "train.log_every_n_steps=1", "eval.gallery_samples=1",
            "model.head_width=8", QUARTER_WIDTH]


BLOCK = re.compile(r'^```(\w+) title="([^"]+)"\n(.*?)^```', re.S | re.M)


def blocks(page: str) -> dict:
    """{path named by the block's title: code} of a docs page."""
    text = (ROOT / "docs" / page).read_text(encoding="utf-8")
    found = {title: code for _, title, code in BLOCK.findall(text)}
    assert found, f"docs/{page} has no titled code block"
    return found


@pytest.fixture(scope="module")
def tutorial_presets(tmp_path_factory):
    """The shipped presets plus every preset the tutorials add, as one presets folder; every
    source file the tutorials add imported (registered) once, and unregistered at the end so that
    the rest of the session sees only the package's own registries."""
    from lhl.core import registry

    registries = [registry.TASKS, registry.METHODS, registry.DATASETS, registry.DISTILLERS]
    saved = {id(r): (list(r), dict(r._items)) for r in registries}  # list(r) loads the package first
    added = []
    folder = tmp_path_factory.mktemp("presets") / "experiments"
    shutil.copytree(ROOT / "experiments", folder, ignore=shutil.ignore_patterns("__pycache__"))
    for page in ("tutorials/add-a-method.md", "tutorials/add-a-dataset.md"):
        for title, code in blocks(page).items():
            path = Path(title)
            if path.parts[0] == "experiments":
                (folder / Path(*path.parts[1:])).write_text(code)
            elif path.suffix == ".py":
                name = f"lhl_docs_tutorial_{path.stem}"
                if name not in sys.modules:
                    file = tmp_path_factory.mktemp("src") / path.name
                    file.write_text(code)
                    spec = importlib.util.spec_from_file_location(name, file)
                    module = importlib.util.module_from_spec(spec)
                    sys.modules[name] = module
                    added.append(name)
                    spec.loader.exec_module(module)
            else:
                raise AssertionError(f"{page}: a titled block of unknown kind: {title}")
    yield folder
    for r in registries:
        r._items.clear()
        r._items.update(saved[id(r)][1])
    for name in added:
        sys.modules.pop(name, None)


def test_the_tutorials_name_what_they_add():
    method_page = blocks("tutorials/add-a-method.md")
    assert {"src/lhl/methods/l2_anchor.py", "src/lhl/methods/lwf_by_kind.py",
            "experiments/method/l2_anchor.yaml", "experiments/method/lwf_by_kind.yaml"} <= set(method_page)
    data_page = blocks("tutorials/add-a-dataset.md")
    assert {"src/lhl/data/sources/stripes.py", "experiments/seq/stripes_s1.yaml"} <= set(data_page)
    text = (ROOT / "docs/tutorials/add-a-method.md").read_text()
    assert "method=l2_anchor" in text and "method=lwf_by_kind" in text


def test_add_a_method_runs_end_to_end(tmp_path, tutorial_presets, monkeypatch):
    """l2_anchor through its preset (on the tutorial's own dataset, which needs no generation): its
    term enters the loss from the second phase on."""
    monkeypatch.setenv("LHL_EXPERIMENTS", str(tutorial_presets))
    cfg = load_config([], ["seq=stripes_s1", "method=l2_anchor", *TINY_STRIPES(tmp_path)])
    assert cfg.method.name == "l2_anchor" and cfg.run.method_tag == "l2_anchor" and cfg.method.strength == 0.01
    res = Results.load(run(cfg))
    assert [p["trained"] for p in res.phases] == [["semantic"], ["depth"]]
    logs = sorted((tmp_path / "runs").rglob("metrics.csv"))
    assert "loss/l2_anchor" not in logs[0].read_text() and "loss/l2_anchor" in logs[1].read_text()


def test_the_distiller_weights_each_task_type(tutorial_presets, monkeypatch):
    """lwf_by_kind's preset halves depth's term: new * 0.5 * L1(student, teacher) by hand."""
    import torch

    from conftest import method_loss
    from lhl.engine.build import build_method
    from lhl.tasks import build_task

    monkeypatch.setenv("LHL_EXPERIMENTS", str(tutorial_presets))
    cfg = load_config([], ["seq=synthetic_small_s1", "method=lwf_by_kind"])
    tasks = {"depth": build_task("depth", "depth", 1), "normal": build_task("normal", "normal", 3)}
    method = build_method(cfg, tasks)
    student = {"depth": torch.full((1, 1, 2, 2), 2.0), "normal": torch.nn.functional.normalize(torch.ones(1, 3, 2, 2), dim=1)}
    teacher = {"depth": torch.full((1, 1, 2, 2), 3.0)}
    batch = {"normal": student["normal"].clone()}
    _, logs = method_loss(method, student, teacher, batch, train=["normal"], old=["depth"])
    assert logs["loss/lwf_by_kind/depth"].item() == pytest.approx(3.0 * 0.5 * 1.0)
    assert logs["lwf_by_kind/depth/unweighted"].item() == pytest.approx(1.0)


def test_a_method_option_typo_is_refused(tutorial_presets, monkeypatch, tmp_path):
    monkeypatch.setenv("LHL_EXPERIMENTS", str(tutorial_presets))
    with pytest.raises(Exception, match="strength"):
        load_config([], ["seq=stripes_s1", "method=l2_anchor", "method.strenght=1"])


def test_add_a_dataset_runs_end_to_end(tmp_path, tutorial_presets, monkeypatch):
    monkeypatch.setenv("LHL_EXPERIMENTS", str(tutorial_presets))
    cfg = load_config([], ["seq=stripes_s1", "method=lwf", *TINY_STRIPES(tmp_path)])
    res = Results.load(run(cfg))
    assert [p["trained"] for p in res.phases] == [["semantic"], ["depth"]]
    final = res.phases[-1]["metrics"]
    assert 0.0 <= final["semantic"]["miou"] <= 1.0 and final["depth"]["abs_err"] > 0
    assert res.meta["class_names"]["semantic"] == ["near", "middle", "far"]
    log = next((tmp_path / "runs").rglob("phase_1/metrics.csv")).read_text()
    assert "loss/lwf/semantic" in log
