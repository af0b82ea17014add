"""The bad-input corpus (tests/bad_inputs): every dataset source's usual mistakes each stop before
training with one error naming the file, the field and the fix."""
from __future__ import annotations

import pytest

from bad_inputs.corpus import CASES, run_case

import lhl.data.sources  # noqa: F401 - registers every source
from lhl.core.registry import DATASETS


def test_the_corpus_covers_every_source():
    assert sorted({c["source"] for c in CASES}) == sorted(DATASETS)


@pytest.mark.parametrize("case", CASES, ids=[f"{c['source']}-{c['case']}" for c in CASES])
def test_bad_input_gets_one_clear_error(case, tmp_path):
    err = run_case(case, tmp_path)
    assert err is not None, "no error: the bad input went through"
    msg = str(err)
    missing = [e for e in case["expect"] if e not in msg]
    assert not missing, f"{type(err).__name__}: {msg}\nlacks {missing}"
    assert not (tmp_path / "runs").exists()  # nothing written before the error


def test_lhl_run_stops_before_making_the_run_folder(tmp_path, capsys):
    from bad_inputs.corpus import materialise

    from lhl.cli import main

    case = next(c for c in CASES if c["source"] == "nyuv2" and c["case"] == "nan_depth")
    data = materialise(case, tmp_path)
    assert main(["run", "seq=nyu_s1", f"data.root={data}", f"run.out_dir={tmp_path / 'runs'}"]) == 2
    assert "val/depth/0.npy: field 'depth': 2 NaN or infinite value(s)" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
