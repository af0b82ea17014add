"""`lhl list`: what a config can name, read from the registries and the presets folder.

Sequences (`seq=`), method presets (`method=`) and registered methods, datasets and their options,
task types, backbones known to work (those the presets and tests use), and for `lhl distill` the
kd presets, segmenter decoders and distillers. The registries are read from the source
(`Registry.declared`), not imported, so the list comes without loading torch.
"""
from __future__ import annotations

from typing import Dict, List

import yaml

from lhl.config import experiments_dir
from lhl.core.registry import DATASETS, DISTILLERS, METHODS, TASKS

#: the constructor arguments every dataset takes that are not `data.options`
SAMPLE_ARGS = ("root", "split", "tasks")

#: lifelong-run backbones (timm names) the presets and tests run; any timm model with features_only may work
KNOWN_BACKBONES = ("resnet18", "resnet18.tv_in1k")
#: distillation segmenters (<decoder>_<timm encoder>) the kd presets and tests run
KNOWN_SEGMENTERS = ("deeplabv3_resnet18", "deeplabv3_resnet50", "deeplabv3_mobilenetv2_100",
                    "deeplabv3_mobilenetv2_035", "segformer_pvt_v2_b0", "upernet_swin_tiny_patch4_window7_224",
                    "fpn_vit_small_patch16_224", "fpn_vit_tiny_patch16_224")

def _presets(group: str) -> Dict[str, dict]:
    folder = experiments_dir() / group
    return {p.stem: (yaml.safe_load(p.read_text()) or {}) for p in sorted(folder.glob("*.yaml"))}


def _get(d: dict, dotted: str, default=None):
    for part in dotted.split("."):
        if not isinstance(d, dict) or part not in d:
            return default
        d = d[part]
    return d


def sections() -> Dict[str, List[str]]:
    """{heading: lines}: everything `lhl list` prints."""
    seqs = _presets("seq")
    out: Dict[str, List[str]] = {}
    out["sequences (seq=)"] = [
        f"{name:20s} {_get(c, 'data.dataset', 'synthetic'):10s} {' -> '.join(_get(c, 'sequence.tasks', []) or [])}"
        for name, c in seqs.items()]
    out["method presets (method=)"] = [
        f"{name:20s} method {_get(c, 'method.name', name)}"
        + (f", mode {_get(c, 'method.mode')}" if _get(c, "method.mode") else "")
        for name, c in _presets("method").items()]
    out["methods (method.name=, or method= without a preset)"] = [", ".join(METHODS.declared())]
    out["datasets (data.dataset=; data.options keys)"] = [
        f"{name:12s} {', '.join(a for a in DATASETS.declared_parameters(name) if a not in SAMPLE_ARGS)}"
        for name in DATASETS.declared()]
    out["task types"] = [", ".join(TASKS.declared())]
    used = {str(_get(c, "model.backbone")) for c in seqs.values() if _get(c, "model.backbone")}
    out["backbones known to work (model.backbone=, timm names)"] = [", ".join(sorted(used | set(KNOWN_BACKBONES)))]
    kd = _presets("kd")
    base = kd.get("default", {})  # every kd preset is merged over default.yaml
    out["distillation presets (lhl distill --config NAME)"] = [
        f"{name:14s} {_get(c, 'teacher.name', _get(base, 'teacher.name'))} -> "
        f"{_get(c, 'student.name', _get(base, 'student.name'))}" for name, c in kd.items()]
    pairs = {str(_get(c, f"{r}.name")) for c in kd.values() for r in ("teacher", "student") if _get(c, f"{r}.name")}
    out["segmenters known to work (--teacher / --student)"] = [", ".join(sorted(pairs | set(KNOWN_SEGMENTERS)))]
    out["distillers (--kd)"] = [", ".join(DISTILLERS.declared()) + ", all"]
    return out
