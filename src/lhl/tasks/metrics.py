"""Task metrics for dense prediction as torchmetrics Metrics with sum-reduced (DDP-exact) states.

Every metric takes the *activated* prediction and the label in the MTAN layout and returns a
`{name: 0-d tensor}` dict from `compute()`. Two reductions:

- ``"global"`` (default): exact dataset-level pixel reductions (one confusion matrix, per-pixel
  means over all valid pixels, a 0.01-degree angle histogram for the median). Under DDP the
  states are summed across ranks, so the result equals a single-device evaluation.
- ``"mtan"``: the official HAD release (MTAN-style `eval_task`): semantic metrics from one
  confusion matrix over the whole set (the release does not average those per batch), depth and
  normal metrics computed per batch and averaged over batches with equal weight, whatever the
  number of valid pixels in each batch; the normal median is the per-batch `torch.median` (lower
  median). Batches without a valid pixel are skipped (the release would produce NaN).

Each task type's metric lives in its task file (`SemanticMetric` in `semantic`, `DepthMetric` in
`depth`, `NormalMetric` in `normal`, `ScalarMetric` in `scalar`); this module holds what they share.
Valid pixels follow each task type's own rule (`valid_classes`, `depth_valid`, `normal_valid`); the
one exception is ``"mtan"``'s normal mask, the release's `release_normal_valid`.

Units: mIoU and pixel accuracy are fractions in [0, 1]; depth errors are in label units (metres)
and relative; normal angles are in degrees and the within-threshold scores are percentages
(0-100) in both reductions (the release's fractions times 100).
"""
from __future__ import annotations

REDUCTIONS = ("global", "mtan")


def check_reduction(reduction: str) -> str:
    """`reduction` if it is one of `REDUCTIONS` (else a ValueError naming them)."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"metric reduction must be one of {REDUCTIONS}, got {reduction!r}")
    return reduction
