"""The paper preset builds and initialises the network as the release does: torchvision's ResNet-18
(no zero-init of a block's last BatchNorm), dilated to output stride 8, and torchvision-style
DeepLabV3 heads with PyTorch's default init. `model.zero_init_last` switches timm's zero-init."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from lhl.config import load_config
from lhl.engine.build import build_network
from lhl.models.backbone import Backbone
from lhl.tasks import build_task

torchvision = pytest.importorskip("torchvision")

PAPER_SCRATCH = ["seq=nyu_s1_paper", "model.pretrained=false"]
HEADS = {"semantic": 13, "depth": 1, "normal": 3}


def _last_bn_weights(body: nn.Module):
    """The last BatchNorm weight of every residual block of a timm / torchvision ResNet."""
    return [m.bn2.weight for m in body.modules() if hasattr(m, "bn2") and hasattr(m, "conv2")]


@pytest.mark.parametrize("zero", [True, False])
def test_zero_init_last_switch(zero):
    body = Backbone("resnet18", pretrained=False, output_stride=8, zero_init_last=zero).body
    last = _last_bn_weights(body)
    assert len(last) == 8
    assert all(bool((w == 0).all()) == zero for w in last)
    others = [p for n, p in body.named_parameters() if "bn" in n and n.endswith("weight") and
              all(p is not w for w in last)]
    assert others and all(bool((p == 1).all()) for p in others)
    if not zero:
        assert not any(bool((p == 0).all()) for n, p in body.named_parameters() if n.endswith("weight"))


def test_config_key_default_and_paper_preset():
    assert load_config([], []).model.zero_init_last is True
    assert load_config([], ["seq=nyu_s1_paper"]).model.zero_init_last is False
    with pytest.raises(ValueError, match="model.zero_init_last=false"):
        Backbone("vit_tiny_patch16_224", zero_init_last=False, output_stride=32)


def _torchvision_reference() -> tuple:
    """torchvision's ResNet-18, dilated in layer3 / layer4 (rates 2 / 4, no stride), and torchvision's
    DeepLabV3 head per task: the release's construction (its ResNet file is torchvision's)."""
    from torchvision.models.segmentation.deeplabv3 import DeepLabHead

    net = torchvision.models.resnet18(weights=None)
    for layer, rate in ((net.layer3, 2), (net.layer4, 4)):
        for i, block in enumerate(layer):
            for conv in (block.conv1, block.conv2):
                first = i == 0 and conv is block.conv1
                d = rate // 2 if first else rate
                conv.stride, conv.dilation, conv.padding = (1, 1), (d, d), (d, d)
            if block.downsample is not None:
                block.downsample[0].stride = (1, 1)
    del net.fc, net.avgpool  # the release keeps conv1 .. layer4 only
    return net, {t: DeepLabHead(512, c) for t, c in HEADS.items()}


def _features(net, x):
    x = net.maxpool(net.relu(net.bn1(net.conv1(x))))
    return net.layer4(net.layer3(net.layer2(net.layer1(x))))


def _stats(p: torch.Tensor):
    return p.float().mean().item(), p.float().std().item()


def test_paper_network_matches_a_torchvision_construction():
    torch.manual_seed(0)
    net = build_network(load_config([], PAPER_SCRATCH))
    for t, c in HEADS.items():
        net.add_head(build_task(t, t, c))
    ref_body, ref_heads = _torchvision_reference()
    # same parameters, in count and shape, backbone and heads
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(net.backbone) == count(ref_body)
    for t in HEADS:
        assert count(net.heads[t]) == count(ref_heads[t])
        assert [p.shape for p in net.heads[t].parameters()] == [p.shape for p in ref_heads[t].parameters()]
    # same init distributions: BatchNorm weight 1 / bias 0, convs' means and standard deviations
    ours = net.backbone.body.state_dict()
    assert set(ours) == set(ref_body.state_dict())  # timm's ResNet names its tensors as torchvision's
    pairs = [(v, ours[k]) for k, v in ref_body.state_dict().items()]
    for t in HEADS:
        pairs += list(zip(ref_heads[t].state_dict().values(), net.heads[t].state_dict().values()))
    for ref, mine in pairs:
        assert ref.shape == mine.shape
        if ref.dtype == torch.long or (ref.numel() > 1 and bool((ref == ref.flatten()[0]).all())):  # BN: 1 / 0
            assert torch.equal(ref, mine)
            continue
        if ref.numel() < 32:  # a classifier's bias: too few values for a statistic
            continue
        (m_ref, s_ref), (m_mine, s_mine) = _stats(ref), _stats(mine)
        assert abs(m_ref - m_mine) < 0.1 * s_ref + 1e-6
        assert s_mine == pytest.approx(s_ref, rel=0.1, abs=1e-6)
    # the same dilation: with torchvision's weights the backbone computes the same map
    net.backbone.body.load_state_dict(ref_body.state_dict())
    net.eval(), ref_body.eval()
    x = torch.rand(2, 3, 48, 64)
    with torch.no_grad():
        assert torch.allclose(net.backbone(x), _features(ref_body, x), atol=1e-5)
        assert net.backbone(x).shape[-2:] == (6, 8)

