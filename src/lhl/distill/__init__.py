"""Cross-architecture distillation for segmentation: segmenters by name, HeteroAKD, KD and CWD."""
from lhl.distill.baselines import ChannelWiseKD, LogitKD, StudentOnly, ce_loss, cwd_loss, kd_loss
from lhl.distill.heteroakd import HeteroAKD
from lhl.distill.segmenters import Segmenter, build_segmenter

__all__ = [
    "ChannelWiseKD", "HeteroAKD", "LogitKD", "Segmenter", "StudentOnly", "build_segmenter",
    "ce_loss", "cwd_loss", "kd_loss",
]
