"""`train.lr_schedule`: the learning rate over one phase, by hand-computed values, and its config check."""
import math

import pytest
import torch

from lhl.config import ConfigError, load_config
from lhl.core.optim import phase_schedule


def _lrs(name: str, total: int, steps: int):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    sched = phase_schedule(opt, name, total)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_constant_is_no_scheduler():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    assert phase_schedule(opt, "constant", 10) is None


def test_cosine_and_poly_by_hand():
    cos = _lrs("cosine", 10, 11)
    assert cos[0] == pytest.approx(0.1) and cos[5] == pytest.approx(0.05) and cos[10] == pytest.approx(0.0, abs=1e-12)
    assert cos[2] == pytest.approx(0.05 * (1 + math.cos(math.pi * 2 / 10)))
    poly = _lrs("poly", 10, 11)
    for k in (0, 3, 7, 10):
        assert poly[k] == pytest.approx(0.1 * (1 - k / 10) ** 0.9, abs=1e-12)


def test_unknown_schedule_is_a_config_error():
    with pytest.raises(ConfigError, match=r"train\.lr_schedule='step': use constant, cosine, poly"):
        load_config([], ["train.lr_schedule=step"])
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(ValueError, match="train.lr_schedule='step'"):
        phase_schedule(opt, "step", 10)
