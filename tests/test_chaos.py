"""The fault campaign at its CI size: a tiny 3-phase run killed twice at random moments (SIGKILL,
SIGTERM or SIGUSR1 as a SLURM requeue), resumed after each, ends with the uninterrupted run's
results.json byte for byte (`lhl dev chaos`, lhl.tools.chaos; `make chaos` runs the full campaign)."""
from __future__ import annotations

import pytest


def _chaos():
    from lhl.tools import chaos

    return chaos


def test_stage_labels_and_first_difference():
    chaos = _chaos()
    assert chaos.stage_of(["x", "== phase 2/3: train ['depth']"]) == "phase 2 training"
    assert chaos.stage_of(["   resuming phase 3 from /r/phase_2/last.ckpt"]) == "phase 3 training (resumed)"
    assert chaos.stage_of([]).startswith("startup")
    assert chaos.first_difference({"a": [1, {"b": 2.0}]}, {"a": [1, {"b": 2.5}]}) == "/a/1/b: 2.0 (reference) != 2.5 (after the faults)"


@pytest.mark.slow
def test_two_random_faults_leave_the_results_identical(tmp_path, capsys):
    chaos = _chaos()
    from lhl.cli import main

    assert main(["dev", "chaos", "--faults", "2", "--seed", "1", "--steps", "2", "--work", str(tmp_path),
                       "--json", str(tmp_path / "chaos.json")]) == 0
    assert capsys.readouterr().out.strip().endswith("2 of 2 faults survived, results identical")
