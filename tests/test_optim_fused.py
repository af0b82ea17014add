"""`train.fused_optimizer`: torch's fused kernels make the same update as the per-tensor loop."""
import pytest
import torch

from lhl.core.optim import build_optimizer, can_fuse


def _trajectory(name: str, fused: bool, steps: int = 5):
    """Parameters after `steps` updates with the same gradients (drawn once per step, away from 0,
    where Adam's g / sqrt(v) is ill-conditioned and rounding alone decides)."""
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(4, 3, 3, 3)), torch.nn.Parameter(torch.randn(4))]
    opt = build_optimizer(params, name, 1e-2, weight_decay=1e-3, fused=fused)
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        for p in params:
            g = torch.randn(p.shape, generator=gen)
            p.grad = g + g.sign()
        opt.step()
    return opt, torch.cat([p.detach().flatten() for p in params])


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd"])
def test_fused_matches_the_loop(name):
    fused_opt, fused = _trajectory(name, True)
    loop_opt, loop = _trajectory(name, False)
    assert fused_opt.defaults["fused"] is True and not loop_opt.defaults.get("fused")
    torch.testing.assert_close(fused, loop, rtol=1e-5, atol=1e-6)


def test_fused_falls_back_where_torch_has_no_kernel():
    ints = [torch.nn.Parameter(torch.zeros(2, dtype=torch.float64)), torch.zeros(2, dtype=torch.int64)]
    assert can_fuse([ints[0]]) and not can_fuse(ints) and not can_fuse([])
    meta = torch.nn.Parameter(torch.zeros(3, device="meta"))
    assert not build_optimizer([meta], "adam", 1e-3, fused=True).defaults.get("fused")


def test_lifelong_runs_default_to_fused():
    from lhl.config.schema import TrainConfig

    assert TrainConfig().fused_optimizer is True
