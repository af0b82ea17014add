"""Task metrics against hand-computed values, torchmetrics references, DDP-style merging and the
official release's per-batch outputs (golden `metrics_batch`)."""
import math
import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torchmetrics.classification import MulticlassJaccardIndex

from lhl.tasks.depth import DepthMetric
from lhl.tasks.normal import NormalMetric
from lhl.tasks.semantic import SemanticMetric
from lhl.tasks.depth import DepthTask
from lhl.tasks.normal import NormalTask
from lhl.tasks.semantic import SemanticTask

GOLDEN = Path(os.environ.get("LHL_GOLDEN", Path(__file__).resolve().parents[2] / "shared" / "golden" / "had_reference.pt"))


def _values(metric):
    return {k: float(v) for k, v in metric.compute().items()}


# --- semantic -----------------------------------------------------------------------------------
def _seg_example():
    """4 classes, class 3 absent from both; one -1 and one 255 label."""
    target = torch.tensor([[[0, 0, 1], [-1, 255, 2]]])
    pred_ids = torch.tensor([[[0, 1, 1], [2, 0, 2]]])
    logits = 5.0 * F.one_hot(pred_ids, 4).permute(0, 3, 1, 2).float()
    return F.log_softmax(logits, dim=1), target


@pytest.mark.parametrize("reduction", ["global", "mtan"])
def test_semantic_hand_values(reduction):
    pred, target = _seg_example()
    m = SemanticMetric(4, ignore_index=-1, reduction=reduction)
    m.update(pred, target)
    v = _values(m)
    # IoU: class 0 1/2, class 1 1/2, class 2 1/1, class 3 absent -> dropped
    assert v["miou"] == pytest.approx(2 / 3, abs=1e-6)
    assert v["pixacc"] == pytest.approx(3 / 4, abs=1e-6)


def test_semantic_class_iou_hand_values_and_mean():
    """Per-class IoU beside the metrics: class 3 absent from both is NaN, and mIoU is the mean of
    the rest; the details are not metrics (Δ and ranks read only compute())."""
    pred, target = _seg_example()
    m = SemanticMetric(4, ignore_index=-1)
    m.update(pred, target)
    iou = m.details()["class_iou"]
    assert iou[:3] == pytest.approx([1 / 2, 1 / 2, 1.0]) and math.isnan(iou[3])
    assert set(m.compute()) == {"miou", "pixacc"}
    assert float(m.compute()["miou"]) == pytest.approx(sum(iou[:3]) / 3)


def test_semantic_class_iou_matches_jaccard_index_per_class():
    g = torch.Generator().manual_seed(1)
    pred = torch.randint(0, 5, (2, 7, 9), generator=g)
    target = torch.randint(-1, 5, (2, 7, 9), generator=g)
    m = SemanticMetric(5)
    m.update(pred, target)
    ref = MulticlassJaccardIndex(5, ignore_index=-1, average="none")
    ref.update(pred, target)
    assert m.details()["class_iou"] == pytest.approx(ref.compute().tolist(), abs=1e-6)


def test_semantic_class_iou_of_merged_halves_equals_single_metric():
    """The per-class details reduce across ranks exactly as the metrics do (summed confusion)."""
    pred, target = _random_inputs(5)["seg"]
    whole, rank0, rank1 = (SemanticMetric(5) for _ in range(3))
    whole.update(pred, target)
    rank0.update(pred[:2], target[:2])
    rank1.update(pred[2:], target[2:])
    rank0.merge_state(rank1)
    assert rank0.details()["class_iou"] == pytest.approx(whole.details()["class_iou"], nan_ok=True)


def test_semantic_accepts_class_ids_and_matches_jaccard_index():
    g = torch.Generator().manual_seed(0)
    pred = torch.randint(0, 5, (3, 9, 11), generator=g)
    target = torch.randint(-1, 5, (3, 9, 11), generator=g)
    target[target == 4] = 2  # class 4 only in the prediction, never in the label
    pred[pred == 3] = 0
    target[target == 3] = 1  # class 3 absent from both
    m = SemanticMetric(6, reduction="global")
    m.update(pred, target)
    ref = MulticlassJaccardIndex(6, ignore_index=-1, average="macro")
    ref.update(pred, target)
    v = _values(m)
    assert v["miou"] == pytest.approx(float(ref.compute()), abs=1e-6)
    valid = target >= 0
    assert v["pixacc"] == pytest.approx(float((pred == target)[valid].float().mean()), abs=1e-6)


# --- depth --------------------------------------------------------------------------------------
def _depth_batches():
    b1 = (torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]]), torch.tensor([[[[2.0, 0.0], [1.0, 4.0]]]]))
    b2 = (torch.tensor([[[[5.0, 5.0]]]]), torch.tensor([[[[2.0, 0.0]]]]))
    b3 = (torch.tensor([[[[7.0]]]]), torch.tensor([[[[0.0]]]]))  # no valid pixel
    return [b1, b2, b3]


def test_depth_global_vs_mtan_hand_values():
    g, t = DepthMetric(reduction="global"), DepthMetric(reduction="mtan")
    for pred, target in _depth_batches():
        g.update(pred, target)
        t.update(pred, target)
    # valid errors: batch 1 -> |1-2|, |3-1|, |4-4| ; batch 2 -> |5-2|
    assert _values(g) == pytest.approx({"abs_err": 6 / 4, "rel_err": (0.5 + 2 + 0 + 1.5) / 4})
    # per-batch means (1, 3) and (5/6, 1.5), averaged over the two batches with valid pixels
    assert _values(t) == pytest.approx({"abs_err": 2.0, "rel_err": (5 / 6 + 1.5) / 2})


# --- normals ------------------------------------------------------------------------------------
def _normal_batch(vectors, labels):
    """[1, 3, 1, N] tensors from lists of 3-vectors."""
    def pack(v):
        return torch.tensor(v, dtype=torch.float32).T.reshape(1, 3, 1, -1)
    return pack(vectors), pack(labels)


def _normal_batches():
    z = [0.0, 0.0, 1.0]
    s, c = math.sin(math.radians(20)), math.cos(math.radians(20))
    # angles 0 (|pred| > 1: cos clamped), 90, 180, 20, then an invalid (all-zero) label
    a = _normal_batch([[0, 0, 1.0001], [1, 0, 0], [0, 0, -1], [s, 0, c], [1, 0, 0]], [z, z, z, z, [0, 0, 0]])
    b = _normal_batch([[0, 1, 0]], [z])  # 90 degrees
    return [a, b]


def test_normal_global_hand_values():
    m = NormalMetric(reduction="global")
    for pred, target in _normal_batches():
        m.update(pred, target)
    v = _values(m)
    # angles 0, 90, 180, 20, 90
    assert v["mean"] == pytest.approx(380 / 5, abs=1e-4)
    assert v["median"] == pytest.approx(90.0, abs=0.0051)
    assert v["within_11.25"] == pytest.approx(20.0)
    assert v["within_22.5"] == pytest.approx(40.0)
    assert v["within_30"] == pytest.approx(40.0)


def test_normal_mtan_hand_values():
    m = NormalMetric(reduction="mtan")
    for pred, target in _normal_batches():
        m.update(pred, target)
    v = _values(m)
    # batch means 72.5 and 90; lower medians 20 and 90; within 25/50/50 % and 0 %
    assert v["mean"] == pytest.approx((72.5 + 90) / 2, abs=1e-4)
    assert v["median"] == pytest.approx((20 + 90) / 2, abs=1e-3)
    assert v["within_11.25"] == pytest.approx(12.5)
    assert v["within_22.5"] == pytest.approx(25.0)
    assert v["within_30"] == pytest.approx(25.0)


def test_normal_mtan_uses_release_mask():
    """The release drops labels whose components sum to 0; the global mode keeps them."""
    r = 1 / math.sqrt(2)
    pred, target = _normal_batch([[0, 0, 1], [r, -r, 0]], [[0, 0, 1], [r, -r, 0]])
    pred[..., 0] = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1)  # first pixel: 90 degrees
    g, t = NormalMetric(reduction="global"), NormalMetric(reduction="mtan")
    g.update(pred, target)
    t.update(pred, target)
    # float32 acos near cos = 1 resolves ~0.02 degrees
    assert _values(g)["mean"] == pytest.approx(45.0, abs=0.05)
    assert _values(t)["mean"] == pytest.approx(90.0, abs=1e-3)


def test_normal_median_matches_torch_median():
    g = torch.Generator().manual_seed(1)
    pred = F.normalize(torch.randn(2, 3, 40, 50, generator=g), dim=1)
    target = F.normalize(torch.randn(2, 3, 40, 50, generator=g), dim=1)
    target[:, :, :5] = 0
    m = NormalMetric()
    m.update(pred, target)
    cos = (pred * target).sum(1).clamp(-1, 1)
    angles = torch.rad2deg(torch.acos(cos))[target.abs().sum(1) != 0]
    assert float(m.compute()["median"]) == pytest.approx(float(torch.median(angles)), abs=0.0051)
    assert float(m.compute()["mean"]) == pytest.approx(float(angles.mean()), abs=1e-3)


# --- DDP property: states merged from two halves equal one metric on everything ---------------------
def _random_inputs(seed):
    g = torch.Generator().manual_seed(seed)
    seg = (torch.randn(4, 5, 8, 8, generator=g).log_softmax(1), torch.randint(-1, 5, (4, 8, 8), generator=g))
    depth_t = torch.rand(4, 1, 8, 8, generator=g) * (torch.rand(4, 1, 8, 8, generator=g) > 0.2)
    depth = (torch.rand(4, 1, 8, 8, generator=g) + 0.5, depth_t)
    nt = F.normalize(torch.randn(4, 3, 8, 8, generator=g), dim=1) * (torch.rand(4, 1, 8, 8, generator=g) > 0.2)
    normal = (F.normalize(torch.randn(4, 3, 8, 8, generator=g), dim=1), nt)
    return {"seg": seg, "depth": depth, "normal": normal}


FACTORIES = {
    "seg": lambda r: SemanticMetric(5, reduction=r),
    "depth": lambda r: DepthMetric(reduction=r),
    "normal": lambda r: NormalMetric(reduction=r),
}


@pytest.mark.parametrize("reduction", ["global", "mtan"])
@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_merged_halves_equal_single_metric(name, reduction):
    pred, target = _random_inputs(3)[name]
    whole, rank0, rank1 = (FACTORIES[name](reduction) for _ in range(3))
    for sl in (slice(0, 2), slice(2, 4)):
        whole.update(pred[sl], target[sl])
    rank0.update(pred[:2], target[:2])
    rank1.update(pred[2:], target[2:])
    rank0.merge_state(rank1)
    merged, single = rank0.compute(), whole.compute()
    assert merged.keys() == single.keys()
    for k in single:
        assert float(merged[k]) == pytest.approx(float(single[k]), rel=1e-6, abs=1e-6), k


@pytest.mark.parametrize("name", ["depth", "normal"])
def test_global_is_not_a_mean_of_batch_means(name):
    """Uneven valid counts per batch: the exact global value differs from the release's
    (semantic metrics are dataset-level in the release too)."""
    pred, target = _random_inputs(4)[name]
    target = target.clone()
    target[2:, :, :6] = 0  # second batch keeps fewer valid pixels
    g, t = FACTORIES[name]("global"), FACTORIES[name]("mtan")
    for sl in (slice(0, 2), slice(2, 4)):
        g.update(pred[sl], target[sl])
        t.update(pred[sl], target[sl])
    key = "abs_err" if name == "depth" else "mean"
    assert abs(float(g.compute()[key]) - float(t.compute()[key])) > 1e-4


def test_task_specs_build_metrics():
    assert isinstance(SemanticTask("semantic", 13).metric("mtan"), SemanticMetric)
    assert isinstance(DepthTask("depth", 1).metric(), DepthMetric)
    m = NormalTask("normal", 3).metric("global")
    assert isinstance(m, NormalMetric)
    pred, target = _random_inputs(5)["normal"]
    m.update(pred, target)
    assert set(m.compute()) == set(NormalTask.metric_directions)


def test_unknown_reduction_is_an_error():
    with pytest.raises(ValueError, match="mtan"):
        DepthMetric(reduction="batch")


# --- golden: the release's per-batch metric code ----------------------------------------------------
@pytest.fixture(scope="module")
def golden_batch():
    if not GOLDEN.is_file():
        pytest.skip(f"golden file {GOLDEN} absent (set LHL_GOLDEN)")
    cases = torch.load(GOLDEN, weights_only=False)["cases"]
    return next(c for c in cases if c["name"] == "metrics_batch")


def test_golden_metrics_batch_mtan(golden_batch):
    c = golden_batch
    seg = SemanticMetric(13, reduction="mtan")
    seg.update(c["seg_pred"], c["seg_label"])
    v = _values(seg)
    assert v["miou"] == pytest.approx(c["miou"], abs=1e-6)
    assert v["pixacc"] == pytest.approx(c["pixacc"], abs=1e-6)

    depth = DepthMetric(reduction="mtan")
    depth.update(c["depth_pred"], c["depth_label"])
    v = _values(depth)
    assert v["abs_err"] == pytest.approx(c["depth_abs"], rel=1e-5)
    assert v["rel_err"] == pytest.approx(c["depth_rel"], rel=1e-5)

    normal = NormalMetric(reduction="mtan")
    normal.update(c["normal_pred"], c["normal_label"])
    v = _values(normal)
    assert v["mean"] == pytest.approx(c["normal_mean"], abs=1e-4)
    assert v["median"] == pytest.approx(c["normal_median"], abs=1e-4)
    for key, ref in (("within_11.25", "normal_11"), ("within_22.5", "normal_22"), ("within_30", "normal_30")):
        assert v[key] == pytest.approx(100.0 * c[ref], abs=1e-4)


def test_golden_mtan_averages_batches(golden_batch):
    """Two copies of the golden batch with one image's labels wiped: the mean of batch values."""
    c = golden_batch
    partial = c["depth_label"].clone()
    partial[1] = 0
    m = DepthMetric(reduction="mtan")
    m.update(c["depth_pred"], c["depth_label"])
    m.update(c["depth_pred"], partial)
    valid = partial[0] != 0
    second = float((c["depth_pred"][0] - partial[0]).abs()[valid].mean())
    assert float(m.compute()["abs_err"]) == pytest.approx((c["depth_abs"] + second) / 2, rel=1e-5)
