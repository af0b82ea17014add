"""The maps distillers read from a segmenter output, and labels at a map's size.

A stage is an int (an index into the encoder's `features`, negative from the deepest) or
"decoder" (the map the classifier reads). Every feature distiller names its stages in its own
config section, so a bad one is an error naming that key and the valid values.
"""
from __future__ import annotations

from typing import Dict, List, Sequence, Tuple, Union

from torch import Tensor, nn

from lhl.losses.aligned_logits import aligned_target, target_at  # noqa: F401  (re-exported)

Stage = Union[int, str]


def stage_map(out: Dict, stage: Stage) -> Tensor:
    """One configured stage of a segmenter output: an index into "features" or "decoder"."""
    if stage == "decoder":
        return out["decoder"]
    return out["features"][int(stage)]


def stage_channels(segmenter: nn.Module, stages: Sequence[Stage], key: str) -> List[int]:
    """Channels of the configured stages of a `Segmenter`; a bad stage is an error naming `key`
    (the full config key, e.g. "kd.heteroakd.teacher_stages")."""
    n = len(segmenter.feature_channels)
    bad = [s for s in stages if s != "decoder" and not (type(s) is int and -n <= s < n)]
    if bad:
        shown = list(stages) if isinstance(stages, (list, tuple)) else stages
        raise ValueError(
            f"{key}={shown}: {bad} invalid for '{segmenter.name}', which has {n} "
            f"feature stages: use ints in [{-n}, {n - 1}] or \"decoder\""
        )
    return [segmenter.width if s == "decoder" else segmenter.feature_channels[s] for s in stages]


def common_size(target: Tensor, stride: int) -> Tuple[int, int]:
    """The size input / `stride` (at least 1x1) at which maps of two segmenters are compared."""
    h, w = target.shape[-2:]
    return max(1, h // int(stride)), max(1, w // int(stride))
