"""SKD, CIRKD and Af-DCD against values computed by hand on 1-4 pixel tensors, and as modules."""
import math

import pytest
import torch

from lhl.distill.afdcd import AugFreeDenseContrastKD, contrast_loss, mimic_loss, to_tokens
from lhl.distill.cirkd import CrossImageKD, pixel_pair_loss, pixel_region_loss, region_embeddings
from lhl.distill.skd import StructuredKD, pairwise_loss, pool_nodes, similarity


def fmap(*pixels):
    """A map [1, C, 1, P] from per-pixel feature lists."""
    return torch.tensor(pixels, dtype=torch.float32).T.reshape(1, len(pixels[0]), 1, len(pixels))


def outputs(feat, logits):
    return {"features": [feat], "decoder": feat, "logits": logits}


# --- SKD ---------------------------------------------------------------------------------------

def test_skd_pairwise_two_pixels_by_hand_and_zero_when_equal():
    # student pixels orthogonal: a^S = [[1, 0], [0, 1]]; teacher pixels parallel (3 channels): a^T = 1
    s, t = fmap([2.0, 0.0], [0.0, 5.0]), fmap([1.0, 0.0, 0.0], [3.0, 0.0, 0.0])
    assert similarity(s)[0].flatten().tolist() == pytest.approx([1, 0, 0, 1], abs=1e-6)
    assert pairwise_loss(s, t, 0.5).item() == pytest.approx(0.5, abs=1e-6)  # mean of (0, 1, 1, 0)
    assert pairwise_loss(s, 3 * s, 0.5).item() == pytest.approx(0.0, abs=1e-7)  # scale-free: cosine


def test_skd_nodes_are_max_pooled_windows():
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    assert pool_nodes(x, 0.5)[0, 0].tolist() == [[5.0, 7.0], [13.0, 15.0]]  # windows of half the map
    assert pool_nodes(x, 0.25).shape[-2:] == (4, 4) and pool_nodes(x, 1.0).shape[-2:] == (1, 1)
    assert pool_nodes(torch.rand(1, 1, 6, 6), 0).shape[-2:] == (3, 3)  # CIRKD's 2 x 2 windows


def test_skd_module_equals_ce_when_the_teacher_is_the_student():
    torch.manual_seed(0)
    feat, logits = torch.randn(2, 4, 3, 3), torch.randn(2, 3, 6, 6, requires_grad=True)
    target = torch.randint(-1, 3, (2, 6, 6))
    skd = StructuredKD()
    out = skd(outputs(feat, logits), outputs(feat.clone(), logits.detach().clone()), target)
    assert out["pi"].item() == pytest.approx(0, abs=1e-6) and out["pa"].item() == pytest.approx(0, abs=1e-7)
    assert out["loss"].item() == pytest.approx(out["ce"].item(), abs=1e-5)
    # teacher with other channels and another size (resized to the student's): a positive loss
    other = skd(outputs(feat, logits), outputs(torch.randn(2, 6, 2, 2), torch.randn(2, 3, 6, 6)), target)
    assert other["pa"] > 0 and other["pi"] > 0
    out2 = StructuredKD(lambda_pi=1, lambda_pa=10)(outputs(feat, logits), outputs(torch.randn(2, 6, 2, 2),
                                                   torch.randn(2, 3, 6, 6)), target)
    out2["loss"].backward()
    assert logits.grad is not None


# --- CIRKD -------------------------------------------------------------------------------------

PAIR_2PX = math.log((math.e + 1) / 2) - 0.5  # KL((.5, .5) || softmax(1, 0)), tau 1


def test_cirkd_pixel_pairs_two_pixels_by_hand():
    # teacher pixels parallel: uniform rows; student orthogonal: rows softmax(1, 0) and softmax(0, 1)
    s, t = fmap([1.0, 0.0], [0.0, 1.0]), fmap([1.0, 0.0, 0.0], [1.0, 0.0, 0.0])
    assert pixel_pair_loss(s, t, tau=1.0).item() == pytest.approx(PAIR_2PX, abs=1e-6)
    assert pixel_pair_loss(s, s.clone(), tau=0.1).item() == pytest.approx(0.0, abs=1e-6)
    # two images equal to that one: all four ordered pairs (i, j) are the same case
    assert pixel_pair_loss(s.repeat(2, 1, 1, 1), t.repeat(2, 1, 1, 1), 1.0).item() == pytest.approx(PAIR_2PX, abs=1e-6)


def test_cirkd_relations_cross_images():
    # one pixel per image: each row of a pair has one column, so every KL is 0 however the images differ
    s = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).reshape(2, 2, 1, 1)
    t = torch.tensor([[1.0, 0.0], [1.0, 0.0]]).reshape(2, 2, 1, 1)
    assert pixel_pair_loss(s, t, 1.0).item() == pytest.approx(0.0, abs=1e-7)
    # image 0 pixels: s (1,0), (1,0); image 1 pixels: s (1,0), (0,1); teacher all parallel (uniform rows).
    s = torch.tensor([[[1.0, 1.0], [0.0, 0.0]], [[1.0, 0.0], [0.0, 1.0]]]).reshape(2, 2, 1, 2)
    t = torch.ones(2, 1, 1, 2)
    # pair (0,0): rows uniform -> 0; (0,1): rows softmax(1, 0) -> PAIR_2PX; (1,0): rows softmax(1,1)
    # and softmax(0,0) -> 0; (1,1): PAIR_2PX. Mean over the four pairs:
    assert pixel_pair_loss(s, t, 1.0).item() == pytest.approx(PAIR_2PX / 2, abs=1e-6)


def test_cirkd_pixel_to_region_by_hand():
    # regions = teacher class means (1, 0) and (0, 1); the student swaps them: KL = tanh(1/2) at tau 1
    t = fmap([1.0, 0.0], [0.0, 1.0], [0.6, 0.8])
    s = fmap([0.0, 1.0], [1.0, 0.0], [0.6, 0.8])
    labels = torch.tensor([[[0, 1, -1]]])
    assert region_embeddings(t, labels).tolist() == [[1.0, 0.0], [0.0, 1.0]]
    assert pixel_region_loss(s, t, labels, tau=1.0, kd_tau=1.0).item() == pytest.approx(math.tanh(0.5), abs=1e-6)
    assert pixel_region_loss(t.clone(), t, labels, tau=0.1).item() == pytest.approx(0.0, abs=1e-6)
    # across the batch: one region per (image, class)
    two = region_embeddings(torch.cat([t, t]), torch.tensor([[[0, 1, -1]], [[1, 1, 1]]]))
    assert two.shape == (3, 2)
    assert pixel_region_loss(s, t, torch.full((1, 1, 3), -1)).item() == 0.0


def test_cirkd_module_trains_its_head_and_not_the_teacher():
    torch.manual_seed(0)
    kd = CrossImageKD(3, student_channels=4, teacher_channels=6, align_stride=2)
    s_feat = torch.randn(2, 4, 4, 4, requires_grad=True)
    t_feat = torch.randn(2, 6, 2, 2, requires_grad=True)
    target = torch.randint(-1, 3, (2, 8, 8))
    out = kd(outputs(s_feat, torch.randn(2, 3, 8, 8)), outputs(t_feat, torch.randn(2, 3, 8, 8)), target)
    assert set(out) == {"loss", "ce", "kd", "pixel", "region"}
    out["loss"].backward()
    assert s_feat.grad is not None and t_feat.grad is None
    assert kd.head[0].weight.grad.abs().sum() > 0


# --- Af-DCD ------------------------------------------------------------------------------------

def test_afdcd_tokens_are_pixel_major_then_group():
    x = torch.arange(8.0).reshape(1, 2, 2, 2)  # channels (0..3 | 4..7), 2 x 2 pixels
    tok = to_tokens(torch.cat([x, x + 8], 1), (2, 2), groups=2)  # 4 channels, groups of 2
    assert tok.shape == (1, 8, 2)
    assert tok[0, 0].tolist() == [0.0, 4.0] and tok[0, 1].tolist() == [8.0, 12.0]  # pixel 0, groups 0, 1
    assert tok[0, 2].tolist() == [1.0, 5.0]  # pixel 1, group 0


def test_afdcd_contrast_one_pixel_by_hand():
    # 2 channels in 2 groups, student = teacher = (0, 1): each token's positive at distance 0, its one
    # negative (the other group) at distance 1: CE = log(1 + e^-1) per token, 2 tokens, 1 pixel, 1 image
    t = fmap([0.0, 1.0])
    assert contrast_loss(t.clone(), t, groups=2, tau=1.0).item() == pytest.approx(2 * math.log1p(math.exp(-1)), abs=1e-6)
    worse = contrast_loss(fmap([1.0, 0.0]), t, groups=2, tau=1.0)  # groups swapped: the maximum here
    assert worse.item() == pytest.approx(2 * (1 + math.log1p(math.exp(-1))), abs=1e-6)


def test_afdcd_contrast_two_pixels_by_hand():
    # pixels (0, 1) and (0, 3); negatives of a token: the other group's tokens at both pixels
    t = fmap([0.0, 1.0], [0.0, 3.0])
    e1, e3 = math.exp(-1), math.exp(-3)
    expected = (2 * math.log(1 + e1 + e3) + math.log(1 + 2 * e1) + math.log(1 + 2 * e3)) / 2  # / pixels
    assert contrast_loss(t.clone(), t, groups=2, tau=1.0).item() == pytest.approx(expected, abs=1e-6)
    # a 2 x 2 patch; pooling is skipped on maps smaller than a pooled patch, the patch shrinks to the map
    big = torch.randn(2, 4, 8, 8)
    assert torch.isfinite(contrast_loss(big, big.clone(), groups=4, tau=0.07))


def test_afdcd_mimic_is_a_sum_over_the_map_per_image():
    p, t = torch.zeros(2, 2, 1, 2), torch.ones(2, 2, 1, 2)
    assert mimic_loss(p, t).item() == 4.0 and mimic_loss(t, t.clone()).item() == 0.0


def test_afdcd_module_masks_in_training_only_and_checks_groups():
    torch.manual_seed(0)
    kd = AugFreeDenseContrastKD(4, 8, groups=4)
    x = torch.randn(2, 4, 4, 4)
    kd.eval()
    assert torch.equal(kd.generate(x, (4, 4)), kd.generate(x, (4, 4)))  # no mask in eval
    kd.train()
    assert not torch.equal(kd.generate(x, (4, 4)), kd.generate(x, (4, 4)))
    s_feat, t_feat = x.clone().requires_grad_(True), torch.randn(2, 8, 2, 2, requires_grad=True)
    target = torch.randint(-1, 3, (2, 8, 8))
    out = kd(outputs(s_feat, torch.randn(2, 3, 8, 8)), outputs(t_feat, torch.randn(2, 3, 8, 8)), target)
    out["loss"].backward()
    assert s_feat.grad is not None and t_feat.grad is None and kd.align.weight.grad is not None
    with pytest.raises(ValueError, match=r"kd\.afdcd\.groups=16: .* 12 channels \(e\.g\. 2, 3, 4, 6, 12\)"):
        AugFreeDenseContrastKD(4, 12)
