"""HAD's hypothesis switches against hand-computed values: DB's class / group weighting, the mean
inside a class or group, SG's pixel selection; their defaults; the grouped option names."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from lhl.config import ConfigError, load_config
from lhl.config.resolve import method_options
from lhl.losses import HADConfig, class_balanced_loss, regression_had, salience_keep, soft_sg, top_fraction_mask
from lhl.losses.had_paper import PaperConfig, balanced_loss
from lhl.methods.had import HAD, had_loss
from lhl.tasks import build_task

FAITHFUL = HADConfig()
E7 = math.exp(-7.0)


def _two_classes():
    """Class 0: losses 1 and 4 (geometric mean 2, arithmetic 2.5); class 1: loss 9 (both 9)."""
    loss = torch.tensor([[[1.0, 4.0, 9.0]]])
    label = torch.tensor([[[0, 0, 1]]])
    return loss, label, torch.ones_like(label, dtype=torch.bool)


@pytest.mark.parametrize("weighting, expected", [
    ("softmax_neg", (2 * 1 / (1 + E7) + 9 * E7 / (1 + E7)) / 2),  # the release: softmax(-G), / class count
    ("uniform", (2 + 9) / 2 / 2),
    ("softmax_pos", (2 * E7 / (1 + E7) + 9 * 1 / (1 + E7)) / 2),
])
def test_release_db_class_weighting(weighting, expected):
    loss, label, valid = _two_classes()
    got = class_balanced_loss(loss, label, valid, 2, FAITHFUL.replace(db_weighting=weighting))
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_release_db_arithmetic_class_mean():
    loss, label, valid = _two_classes()
    cfg = FAITHFUL.replace(db_weighting="uniform", group_mean="arithmetic")
    assert class_balanced_loss(loss, label, valid, 2, cfg).item() == pytest.approx((2.5 + 9) / 2 / 2)
    # the mends keep working beside the switch: weighted sum over the present classes
    fixed = HADConfig.for_mode("fixed").replace(db_weighting="uniform", group_mean="arithmetic")
    assert class_balanced_loss(loss, label, valid, 3, fixed).item() == pytest.approx((2.5 + 9) / 2)


def test_release_regression_groups_stay_arithmetic():
    depth = build_task("depth", "depth", 1)
    pred, target = torch.tensor([[[[0.2, 0.4], [0.8, 1.0]]]]), torch.tensor([[[[0.3, 0.6], [0.5, 0.5]]]])
    geo = regression_had(depth, pred, target, FAITHFUL)[1]
    assert regression_had(depth, pred, target, FAITHFUL.replace(group_mean="arithmetic"))[1].item() == geo.item()


@pytest.mark.parametrize("weighting, expected", [
    ("uniform", (2 + 9) / 2),  # the paper: each image's groups weigh the same
    ("softmax_neg", 2 * 1 / (1 + E7) + 9 * E7 / (1 + E7)),
    ("softmax_pos", 2 * E7 / (1 + E7) + 9 * 1 / (1 + E7)),
])
def test_paper_db_group_weighting(weighting, expected):
    loss, groups, valid = _two_classes()
    got = balanced_loss(loss, valid, groups, 2, PaperConfig(db_weighting=weighting))
    assert got.item() == pytest.approx(expected, rel=1e-6)
    arith = balanced_loss(loss, valid, groups, 2, PaperConfig(db_weighting=weighting, group_mean="arithmetic"))
    w = {"uniform": (0.5, 0.5), "softmax_neg": (1 / (1 + math.exp(-6.5)), math.exp(-6.5) / (1 + math.exp(-6.5))),
         "softmax_pos": (math.exp(-6.5) / (1 + math.exp(-6.5)), 1 / (1 + math.exp(-6.5)))}[weighting]
    assert arith.item() == pytest.approx(2.5 * w[0] + 9 * w[1], rel=1e-6)


def test_top_fraction_keeps_the_highest_magnitudes():
    mag = torch.arange(20.0).view(1, 4, 5)  # 10 % of 20 pixels: the two largest, 19 and 18
    keep = top_fraction_mask(mag, 0.1)
    assert keep.sum() == 2 and keep.flatten()[18:].all()
    valid = torch.ones(1, 4, 5, dtype=torch.bool)
    valid[0, 3, 4] = False  # the largest is invalid: the next two
    assert top_fraction_mask(mag, 0.1, valid).flatten().nonzero().flatten().tolist() == [17, 18]
    assert top_fraction_mask(mag, 0.3).sum() == 6 and top_fraction_mask(mag, 0.01).sum() == 1


def test_top_fraction_through_the_loss_map():
    loss = torch.rand(2, 6, 5, generator=torch.Generator().manual_seed(0))  # 30 pixels an image: 3 kept
    keep = salience_keep(loss, FAITHFUL.replace(sg_select="top_fraction"))
    assert keep.dtype == torch.bool and keep.flatten(1).sum(dim=1).tolist() == [3, 3]
    assert salience_keep(loss, FAITHFUL.replace(sg_select="top_fraction", sg_fraction=0.2)).sum() == 12


def test_soft_selection_weights_the_loss_map():
    loss = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    w = torch.tensor([[0.0, 0.5, 1.0, 0.5]])
    counted = torch.ones_like(loss, dtype=torch.bool)
    assert soft_sg(loss, counted, w).item() == pytest.approx((0 + 1 + 3 + 2) / 2)
    counted[0, 2] = False  # an uncounted pixel weighs nothing
    assert soft_sg(loss, counted, w).item() == pytest.approx((0 + 1 + 2) / 1)
    assert soft_sg(loss, counted, torch.zeros_like(w)).item() == 0.0
    # a flat loss map has no edge under replicate padding: every weight 0; the release's zero padding
    # makes its border an edge (corners 1, other border pixels 4/sqrt(18), the inside 0)
    fixed = HADConfig.for_mode("fixed").replace(sg_select="soft")
    weight = salience_keep(torch.ones(1, 4, 4), fixed)
    assert weight.dtype == torch.float32 and weight.sum() == 0
    weight = salience_keep(torch.ones(1, 4, 4), FAITHFUL.replace(sg_select="soft"))[0]
    assert weight[0, 0] == 1 and weight[1, 1] == 0 and weight[0, 1].item() == pytest.approx(4 / math.sqrt(18))


@pytest.mark.parametrize("mode", ["faithful", "fixed", "paper"])
def test_switches_in_every_mode(mode):
    g = torch.Generator().manual_seed(1)
    s, t = torch.rand(1, 1, 4, 5, generator=g), torch.rand(1, 1, 4, 5, generator=g)  # 20 pixels
    top = had_loss("depth", s, t, mode=mode, sg_select="top_fraction", return_parts=True)[1]
    assert top["edge_keep"].item() == pytest.approx(0.1)
    soft = had_loss("depth", s, t, mode=mode, sg_select="soft", return_parts=True)[1]
    assert 0 < soft["edge_keep"].item() < 1  # the mean weight
    err = (s - t).abs().squeeze()
    assert soft["sg"].item() <= err.max().item() and soft["sg"].item() >= err.min().item()
    seg_s = torch.log_softmax(torch.randn(1, 3, 4, 5, generator=g), dim=1)
    seg_t = torch.log_softmax(torch.randn(1, 3, 4, 5, generator=g), dim=1)
    terms = {w: had_loss("semantic", seg_s, seg_t, mode=mode, db_weighting=w, return_parts=True)[1]["db"].item()
             for w in ("softmax_neg", "uniform", "softmax_pos")}
    assert terms["softmax_neg"] <= terms["uniform"] <= terms["softmax_pos"]  # weight moves to low / high G


def test_defaults_are_todays_behaviour():
    assert HAD.Options(mode="faithful").loss_config() == HADConfig()
    for mode in ("faithful", "fixed"):
        cfg = HAD.Options(mode=mode).loss_config()
        assert (cfg.db_weighting, cfg.group_mean, cfg.sg_select) == ("softmax_neg", "geometric", "threshold")
    cfg = HAD.Options(mode="paper").loss_config()
    assert cfg == PaperConfig() and cfg.db_weighting == "uniform" and cfg.sg_select == "threshold"


def test_switch_values_are_checked():
    for bad, message in ((dict(db_weighting="softmax"), "method.ablation.db_weighting"),
                         (dict(sg_select="edges"), "method.ablation.sg_select"),
                         (dict(sg_fraction=0), "method.ablation.sg_fraction"),
                         (dict(sg_fraction=1.5), "method.ablation.sg_fraction")):
        with pytest.raises(ValueError, match=message):
            HAD.Options(ablation=bad)
    with pytest.raises(ValueError, match="sel_max"):
        HAD.Options(sel_max=0, ablation={"sg_select": "soft"})


def test_old_flat_names_name_their_new_place():
    for key, message in (("db=false", "is now 'method.ablation.db'"),
                         ("full_cosine=true", "is now 'method.mends.full_cosine'"),
                         ("td_ba=1", "was removed")):
        with pytest.raises(ConfigError, match=message):
            load_config([], ["method=had", f"method.{key}"])
    with pytest.raises(ConfigError, match="did you mean 'sg_select'"):
        load_config([], ["method=had", "method.ablation.sg_selct=soft"])


def test_every_had_preset_resolves():
    presets = sorted(p.stem for p in (Path(__file__).resolve().parents[1] / "experiments" / "method").glob("had*.yaml"))
    assert len(presets) >= 13
    for name in presets:
        _, options = method_options(load_config([], [f"method={name}"]))
        assert isinstance(options, HAD.Options)
