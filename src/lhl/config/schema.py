"""The typed config schema: every key of a lifelong run with its default and what it means.

OmegaConf builds the structured config from these dataclasses, so an unknown key or a value of
the wrong type is an error at merge time (`lhl.config.compose`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional


@dataclass
class RunConfig:
    name: Optional[str] = None  # run folder = out_dir/name; default <seq>/<method>/seed<seed>
    out_dir: str = "runs"
    seed: int = 0
    resume: bool = True  # re-running on an existing run folder continues after its last phase
    method_tag: Optional[str] = None  # the method preset's name (had_faithful); default method.name
    # the seeds `lhl compare` / `lhl paper` run when given no seeds= (a benchmark preset's count)
    seeds: Optional[List[int]] = None
    # a run folder: every phase after the first starts from that run's network after the phase
    # before, not from this run's own (make curves ISOLATED=1: each phase doubled from the same start)
    phases_start_from: Optional[str] = None


@dataclass
class DataConfig:
    dataset: str = "synthetic"  # a registered dataset: synthetic | nyuv2 | cityscapes | taskonomy
    root: Optional[str] = None  # default: $LHL_DATA/<dataset> (synthetic: its cache)
    options: Dict[str, Any] = field(default_factory=dict)  # dataset-specific options
    batch_size: int = 8  # PER PROCESS (per GPU): the global batch is batch_size x devices x num_nodes
    # optional global batch: when set, each process takes global_batch_size / world size (an error
    # if that does not divide), and batch_size is ignored
    global_batch_size: Optional[int] = None
    eval_batch_size: Optional[int] = None  # per process; default: the per-process train batch
    num_workers: int = 0
    shuffle: bool = True  # shuffle within a phase's slice (the release: false)
    drop_last: bool = True
    shuffle_split: bool = False  # permute the train set before cutting it into phase slices
    split_seed: int = 0
    augment: bool = False  # GPU-side random scale-crop + flip (normals' x flips too)
    normal_x_channel: Optional[int] = None  # stored normal channel the flip negates; None: the dataset's
    # which data the run trains and evaluates on: report (the reported val/test split) | tune (the
    # tuning stream of `lhl tune`, never the reported split: a dataset with a generator makes other
    # views from other generator seeds; any other dataset holds out `val_fraction` of each phase's
    # train slice and evaluates on that)
    stream: str = "report"
    val_fraction: float = 0.1  # stream=tune, datasets without a generator: the held-out share of each slice


@dataclass
class SequenceConfig:
    name: str = "synthetic_s1"
    tasks: List[str] = field(default_factory=lambda: ["semantic", "depth", "normal"])


@dataclass
class ModelConfig:
    backbone: str = "resnet18"  # any timm model with features_only
    pretrained: bool = False  # ImageNet weights through timm (needs a network or a warm cache)
    output_stride: int = 8  # dilated ResNet as released
    head_width: int = 256  # ASPP channels (256 as released; smaller for CPU presets)
    aspp_rates: List[int] = field(default_factory=lambda: [12, 24, 36])
    dropout: float = 0.5
    # zero-initialise the last BatchNorm of every residual block (timm's default); false: torchvision's
    # init, as the release builds its ResNet (matters from scratch, not with pretrained weights)
    zero_init_last: bool = True
    # keyword arguments for timm.create_model(model.backbone), e.g. {channels: [16, 32, 64, 128]}: a
    # ResNet at a quarter of its width (the CPU benchmark's backbone); they apply to model.backbone only
    timm_kwargs: Dict[str, Any] = field(default_factory=dict)
    # scratch | synthetic_pretrained: the backbone pretrained once on a disjoint synthetic-rooms set
    # (material families; cached under $LHL_CACHE/init), ImageNet's stand-in for the CPU presets
    init: str = "scratch"
    # an architecture upgrade mid-sequence (docs/methods/architecture-upgrade.md): from
    # phase upgrade_at (1 .. phases-1) the student is a new network whose encoder is upgrade_to (a
    # timm name, or a deeplabv3_<timm encoder> segmenter name), with blank heads for every task seen;
    # the old network is its frozen teacher. Both null: no upgrade
    upgrade_at: Optional[int] = None
    upgrade_to: Optional[str] = None


@dataclass
class TrainConfig:
    epochs: int = 1  # a phase's epochs (those in task_epochs aside)
    # epochs of the phases that train these tasks, e.g. {depth: 8, normal: 14} (a phase that trains
    # several, as joint's: the most of theirs); every other phase trains `epochs`; null: none
    task_epochs: Optional[Dict[str, int]] = None
    # every phase trains epoch_scale x its epochs (make curves: 2, the doubled run of the convergence check)
    epoch_scale: int = 1
    max_steps: int = -1  # per phase; -1 = epochs decide
    limit_train_batches: Optional[float] = None
    optimizer: str = "adam"  # adam | adamw | sgd
    lr_schedule: str = "constant"  # over each phase: constant (the release) | cosine | poly (power 0.9)
    lr: float = 1e-4
    weight_decay: float = 1e-5
    momentum: float = 0.9  # sgd only
    # torch's fused optimiser kernels (same update, other rounding; on CPU ~5x faster steps than the
    # per-tensor loop); false: the loop, as every lifelong run before 2026-12-02 used
    fused_optimizer: bool = True
    accelerator: str = "auto"
    devices: Any = 1
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "32-true"  # bf16-mixed on GPUs
    sync_batchnorm: bool = False  # DDP: BatchNorm statistics over the global batch
    channels_last: bool = False
    compile: bool = False
    deterministic: bool = False
    gradient_clip_val: Optional[float] = None
    log_every_n_steps: int = 10
    progress_bar: bool = True
    # mid-phase "last" checkpoint (phase_<i>/last.ckpt, resumed from when the phase re-runs, deleted
    # when it ends): every N minutes of training (null: off) ...
    checkpoint_every_minutes: Optional[float] = 30.0
    # ... or, when set, every N optimiser steps instead (Lightning takes one trigger, not both)
    checkpoint_every_steps: Optional[int] = None
    # shared: one teacher backbone pass per step for all old heads; per_task: one pass per old
    # task, as the release runs it (only for measuring what the shared pass saves)
    teacher_pass: str = "shared"


@dataclass
class EvalConfig:
    reduction: str = "global"  # global (exact, DDP-safe) | mtan (the release's per-batch averaging)
    limit_batches: Optional[float] = None
    gallery_samples: int = 4  # val images in the per-phase prediction gallery (0 = none)
    # learning curves: also validate every N epochs during each phase's fit, recorded in the run
    # folder's curves.json (lhl curves); training and the final results are unchanged. null: off
    every_n_epochs: Optional[int] = None


@dataclass
class DiagConfig:
    # loss-term diagnostics (lhl.engine.diagnostics): every N training steps of a phase that the
    # loggers write, each loss term's gradient norm and cosine with the new task's on the backbone,
    # and the worst-decile share of pixel-wise distillation terms, logged as diag/<term>/...;
    # null: off (nothing computed). Training and its results are the same either way
    every: Optional[int] = None


@dataclass
class LoggerConfig:
    name: str = "csv"  # csv | wandb | tensorboard | none
    project: str = "lhl"
    entity: Optional[str] = None
    group: Optional[str] = None  # default: <seq>/<method preset>/<overrides key of the run folder>
    offline: Optional[bool] = None  # wandb: default offline when no API key is configured


@dataclass
class Config:
    run: RunConfig = field(default_factory=RunConfig)
    data: DataConfig = field(default_factory=DataConfig)
    sequence: SequenceConfig = field(default_factory=SequenceConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    method: Dict[str, Any] = field(default_factory=lambda: {"name": "finetune"})
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    diag: DiagConfig = field(default_factory=DiagConfig)
