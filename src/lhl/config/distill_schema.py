"""The typed config schema of `lhl distill`: every key with its default and what it means.

Presets under `experiments/kd/` (default.yaml first) and `key=value` overrides are merged over
these dataclasses, so an unknown key or a value of the wrong type is an error naming the key and
the file (`lhl.distill.config`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Union


@dataclass
class DistillRunConfig:
    out_dir: str = "runs/kd"  # the run folder is out_dir/name
    name: Optional[str] = None  # default: <data>_<teacher>_to_<student>
    seed: int = 0  # seed_everything before each model is built (same student init for all)
    # none | kd | cwd | skd | cirkd | afdcd | heteroakd | all (every registered distiller), or a
    # comma-separated list of them ("none,kd,heteroakd"); the table keeps earlier rows in the folder
    # made with the same config and teacher
    kd: str = "all"
    # a teacher.ckpt written by this command; default <run folder>/teacher.ckpt, trained first when
    # absent and reused when present (an error when it does not match teacher.* apart from
    # pretrained, or the data's classes); with --seeds it must hold "{seed}", filled with each seed
    teacher_ckpt: Optional[str] = None


@dataclass
class DistillDataConfig:
    name: str = "synthetic"  # synthetic | nyuv2 | cityscapes (any registered dataset with "semantic")
    root: Optional[str] = None  # default: the dataset's own ($LHL_DATA/<name>; synthetic: its cache)
    batch_size: int = 8
    num_workers: int = 0
    # options per dataset, passed to the dataset class named by `name` (free keys)
    synthetic: Dict[str, Any] = field(
        default_factory=lambda: {"n_train": 96, "n_val": 32, "height": 64, "width": 64, "seed": 0}
    )
    nyuv2: Dict[str, Any] = field(default_factory=dict)
    cityscapes: Dict[str, Any] = field(default_factory=lambda: {"classes": 19})


@dataclass
class SegmenterConfig:
    name: str = "deeplabv3_resnet18"  # <deeplabv3|segformer|upernet|fpn>_<timm encoder>
    width: int = 64  # decoder channels (256 in the papers)
    pretrained: bool = False  # ImageNet weights through timm (needs a network or a warm cache)
    output_stride: int = 8  # CNN encoders only (dilated)
    out_indices: Optional[List[int]] = None  # encoder stages returned (null: timm's default)
    dropout: float = 0.1
    aspp_rates: List[int] = field(default_factory=lambda: [12, 24, 36])  # deeplabv3 only
    encoder_kwargs: Dict[str, Any] = field(default_factory=dict)  # extra timm kwargs (free keys)


@dataclass
class DistillTrainConfig:
    teacher_steps: int = 300  # optimiser steps of the teacher (skipped when its checkpoint exists)
    student_steps: int = 200  # optimiser steps of every student run
    optimizer: str = "adamw"  # adamw | adam | sgd (momentum 0.9); polynomial decay, power 0.9, to 0
    lr: float = 2.0e-3
    weight_decay: float = 1.0e-4
    accelerator: str = "auto"  # Lightning accelerator (CPU when no GPU)
    devices: Any = 1  # one device only (multi-device runs are refused); [k] picks GPU k
    precision: str = "32-true"  # bf16-mixed on GPUs
    log_every_n_steps: int = 10
    progress_bar: bool = False


@dataclass
class LogitKDConfig:
    """Plain pixel-wise logit KD (Hinton): CE + weight * tau^2 KL."""

    tau: float = 1.0
    weight: float = 1.0


@dataclass
class CWDConfig:
    """Channel-wise distillation (Shu et al. 2021) on the logits."""

    tau: float = 4.0
    weight: float = 3.0


@dataclass
class HeteroAKDConfig:
    """See src/lhl/distill/heteroakd.py for every switch."""

    # stages paired in order: ints index the encoder stages; "decoder" = the decoder map
    teacher_stages: List[Union[int, str]] = field(default_factory=lambda: [-2, -1])
    student_stages: List[Union[int, str]] = field(default_factory=lambda: [-2, -1])
    tau: float = 1.0  # temperature of the soft-target loss from Z_H
    lambda_akd: float = 1.0
    lambda_kd: float = 0.1  # plain logit KD on the final logits
    kd_tau: float = 1.0
    lambda_proj: float = 1.0  # CE of the projected logits (trains the teacher projector)
    align_stride: int = 4  # common size of the aligned logits = input / align_stride
    weight_axis: str = "class"  # softmax axis of W: class | pixel | all
    kl_form: str = "softmax"  # softmax (per-class generalised-KL terms) | binary (per-class sigmoid KL)
    # reliability H: softmax (calibrated: BCE of softmax(Z) per class, Z_T / Z_S centred per pixel
    # before the mix; invariant to a per-pixel offset of the logits) | sigmoid (the literal
    # BCE(sigmoid(Z)) on raw logits, the behaviour before the calibration)
    reliability: str = "softmax"
    projector: str = "conv_bn_relu"  # conv_bn_relu (1x1 conv, BatchNorm, ReLU; measured better) | conv (a 1x1 conv)
    projector_relu: bool = False  # a ReLU on the stage features before the projector
    projector_supervision: str = "teacher"  # teacher | both | none (CE on the projected logits)
    kmm: bool = True  # false: Z_H = Z_T (ablation)
    kem: bool = True  # false: W = 1 (ablation)
    eps: float = 1.0e-6


@dataclass
class SKDConfig:
    """Structured KD (Liu et al. 2019), without its GAN term: see src/lhl/distill/skd.py."""

    lambda_pi: float = 10.0  # pixel-wise KD on the logits
    lambda_pa: float = 0.5  # pair-wise similarity distillation on the stage maps
    tau: float = 1.0  # temperature of the pixel-wise KD
    pool_scale: float = 0.5  # max-pool windows = scale x map size (0.5: 2 x 2 nodes); 0 = 2 x 2 windows
    teacher_stage: Union[int, str] = "decoder"  # an encoder stage index or "decoder"
    student_stage: Union[int, str] = "decoder"


@dataclass
class CIRKDConfig:
    """Cross-image relational KD (Yang et al. 2022), in-batch: see src/lhl/distill/cirkd.py."""

    lambda_kd: float = 1.0  # pixel-wise logit KD
    kd_tau: float = 1.0
    lambda_pixel: float = 1.0  # cross-image pixel-to-pixel relations
    lambda_region: float = 0.1  # pixel-to-region relations (teacher class means of the batch)
    tau: float = 0.1  # temperature of the similarity distributions
    region_kd_tau: float = 1.0  # KD temperature of the pixel-to-region KL
    align_stride: int = 8  # maps compared at input / align_stride
    teacher_stage: Union[int, str] = "decoder"
    student_stage: Union[int, str] = "decoder"


@dataclass
class AfDCDConfig:
    """Augmentation-free dense contrastive KD (Fan et al. 2023): see src/lhl/distill/afdcd.py."""

    lambda_kd: float = 1.0  # pixel-wise logit KD
    kd_tau: float = 1.0
    lambda_fd: float = 2.0e-6  # masked feature mimicking (a sum over the map: scales with its size)
    lambda_ctr: float = 0.005  # omni-contrastive loss
    tau: float = 0.07  # InfoNCE temperature
    groups: int = 16  # channel groups (must divide the teacher stage's channels)
    pool_size: int = 4  # max-pool before contrasting (skipped on maps smaller than a pooled patch)
    patch_size: List[int] = field(default_factory=lambda: [4, 4])
    mask_ratio: float = 0.75  # share of student pixels zeroed before the projector
    teacher_stage: Union[int, str] = -1  # the last encoder stages
    student_stage: Union[int, str] = -1


@dataclass
class KDConfig:
    """One section per distiller with settings, named as its registry entry (`run.kd`)."""

    kd: LogitKDConfig = field(default_factory=LogitKDConfig)
    cwd: CWDConfig = field(default_factory=CWDConfig)
    skd: SKDConfig = field(default_factory=SKDConfig)
    cirkd: CIRKDConfig = field(default_factory=CIRKDConfig)
    afdcd: AfDCDConfig = field(default_factory=AfDCDConfig)
    heteroakd: HeteroAKDConfig = field(default_factory=HeteroAKDConfig)


@dataclass
class DistillConfig:
    run: DistillRunConfig = field(default_factory=DistillRunConfig)
    data: DistillDataConfig = field(default_factory=DistillDataConfig)
    teacher: SegmenterConfig = field(default_factory=SegmenterConfig)
    student: SegmenterConfig = field(default_factory=lambda: SegmenterConfig(name="segformer_pvt_v2_b0"))
    train: DistillTrainConfig = field(default_factory=DistillTrainConfig)
    kd: KDConfig = field(default_factory=KDConfig)
