"""Cross-architecture distillation for segmentation: segmenters by name, HeteroAKD and its baselines
(logit KD, CWD, SKD, CIRKD, Af-DCD).

Importing this package registers every distiller in `lhl.core.registry.DISTILLERS`; a new one is
a module here with a `@DISTILLERS.register(name)` `Distiller` class, imported below.
"""
from lhl.distill.afdcd import AugFreeDenseContrastKD
from lhl.distill.baselines import ChannelWiseKD, Distiller, LogitKD, StudentOnly, ce_loss, cwd_loss, kd_loss
from lhl.distill.cirkd import CrossImageKD
from lhl.distill.heteroakd import HeteroAKD
from lhl.distill.segmenters import Segmenter, build_segmenter
from lhl.distill.skd import StructuredKD

__all__ = [
    "AugFreeDenseContrastKD", "ChannelWiseKD", "CrossImageKD", "Distiller", "HeteroAKD", "LogitKD",
    "Segmenter", "StructuredKD", "StudentOnly", "build_segmenter", "ce_loss", "cwd_loss", "kd_loss",
]
