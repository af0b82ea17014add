"""Config keys as dotted paths: flattening a nested config, and the keys that leave a run's results
unchanged (hardware, logging and display), which a run may change on resumption
(`engine.run_identity`) and a shorter run of the same training may differ in (`reporting.curves`)."""
from __future__ import annotations

from typing import Any, Dict

#: keys that may change between a run and its resumption (hardware, logging, progress display)
RESUMABLE_CHANGES = (
    "run.resume", "logger", "train.progress_bar", "train.log_every_n_steps", "data.num_workers",
    "train.checkpoint_every",  # the mid-phase checkpoint interval (minutes / steps)
    "data.eval_batch_size", "train.devices", "train.num_nodes", "train.strategy", "train.accelerator",
    "train.precision", "train.compile", "train.channels_last", "train.teacher_pass",
    "eval.gallery_samples",
    "diag",  # the loss-term diagnostics: measured, never changing the training
)


def flatten(d: Dict[str, Any], prefix: str = "") -> Dict[str, Any]:
    """{dotted key: leaf} of a nested dict (an empty dict is a leaf)."""
    out: Dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out
