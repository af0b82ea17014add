"""Cross-architecture distillation for segmentation: segmenters by name, HeteroAKD, KD and CWD.

Importing this package registers every distiller in `lhl.core.registry.DISTILLERS`; a new one is
a module here with a `@DISTILLERS.register(name)` `Distiller` class, imported below.
"""
from lhl.distill.baselines import ChannelWiseKD, Distiller, LogitKD, StudentOnly, ce_loss, cwd_loss, kd_loss
from lhl.distill.heteroakd import HeteroAKD
from lhl.distill.segmenters import Segmenter, build_segmenter

__all__ = [
    "ChannelWiseKD", "Distiller", "HeteroAKD", "LogitKD", "Segmenter", "StudentOnly", "build_segmenter",
    "ce_loss", "cwd_loss", "kd_loss",
]
