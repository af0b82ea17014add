"""HAD's options, validated once: the mode, the release's hyper-parameters, and two groups of
switches, `mends` (the release's quirks, each on or off) and `ablation` (the paper's ablations and
the one-change-at-a-time hypotheses). `HADOptions.loss_config()` resolves them into the settings the
losses layer computes with (`HADConfig` for `faithful` / `fixed`, `PaperConfig` for `paper`).

In a config: `method.mends.full_cosine=false`, `method.ablation.db_weighting=uniform`. The names
that used to sit flat under `method.` (`method.full_cosine`, `method.db`, ...) are refused with
the new name (`RENAMED`, read by the config check).
"""
from __future__ import annotations

import dataclasses
import difflib
import numbers
from dataclasses import dataclass, field
from typing import Any, ClassVar, Dict, Optional, Union

from lhl.losses.had_paper import GROUP_MEANS, SALIENCE_SOURCES, PaperConfig
from lhl.losses.had_parts import DB_WEIGHTINGS, MENDS, HADConfig
from lhl.losses.salience import SELECTIONS
from lhl.methods.shared.paradigm import PARADIGMS
from lhl.methods.shared.upgrade import UpgradeOptions

MODES = ("faithful", "fixed", "paper")
WEIGHTINGS = ("paper", "release")
#: ablation switches that only `mode: paper` has (its per-image bins and label-map salience)
PAPER_ONLY = {"bins": 2, "salience_source": "loss"}


@dataclass
class Mends:
    """One switch per quirk of the release; None follows the mode (faithful: off, fixed: on)."""

    exclude_absent_classes: Optional[bool] = None
    per_image_depth_mask: Optional[bool] = None
    masked_normal_numerator: Optional[bool] = None
    full_cosine: Optional[bool] = None
    mean_of_groups: Optional[bool] = None
    replicate_padding: Optional[bool] = None
    group_by_pseudo_label: Optional[bool] = None
    class_weighted_mean: Optional[bool] = None
    sg_mean_over_kept: Optional[bool] = None
    count_valid_pixels: Optional[bool] = None

    def __post_init__(self):
        for name in MENDS:
            value = getattr(self, name)
            if value is not None and not isinstance(value, bool):
                raise ValueError(f"method.mends.{name} must be true, false or null (follow the mode), got {value!r}")

    def resolved(self, mode: str) -> Dict[str, bool]:
        return {n: (mode == "fixed") if getattr(self, n) is None else getattr(self, n) for n in MENDS}


@dataclass
class Ablation:
    """The paper's ablations and the hypotheses' switches; every default is today's behaviour."""

    db: bool = True  # false: the plain pseudo-label loss in DB's place
    sg: bool = True  # false: the plain pseudo-label loss in SG's place
    group_mean: str = "geometric"  # mean inside a class (faithful/fixed: semantic) or group (paper)
    db_weighting: Optional[str] = None  # softmax_neg | uniform | softmax_pos; null: the mode's
    sg_select: str = "threshold"  # threshold (release / paper) | top_fraction | soft
    sg_fraction: float = 0.1  # sg_select=top_fraction: share of each image's pixels kept
    bins: int = 2  # paper only: value bins of the regression groups
    salience_source: str = "loss"  # paper only: Sobel of the loss map | of the teacher's prediction
    weighting: Optional[str] = None  # paper: new/(2(t-1)); release: new; null: the mode's
    paradigm: str = "simultaneous"  # the paper's training-paradigm ablation
    new_first_steps: Optional[int] = None  # paradigm new_first: steps of the first part

    def __post_init__(self):
        for name in ("db", "sg"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"method.ablation.{name} must be true or false, got {getattr(self, name)!r}")
        choices = {"group_mean": GROUP_MEANS, "db_weighting": (None, *DB_WEIGHTINGS), "sg_select": SELECTIONS,
                   "salience_source": SALIENCE_SOURCES, "weighting": (None, *WEIGHTINGS), "paradigm": PARADIGMS}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                shown = ", ".join("null" if a is None else a for a in allowed)
                raise ValueError(f"method.ablation.{name} must be one of {shown}, got {getattr(self, name)!r}")
        if isinstance(self.bins, bool) or not isinstance(self.bins, int) or self.bins < 2:
            raise ValueError(f"method.ablation.bins must be an integer >= 2 (2 = the split at num_interval), "
                             f"got {self.bins!r}")
        _check_number("ablation.sg_fraction", self.sg_fraction, low=0.0, high=1.0)
        if self.sg_fraction == 0:
            raise ValueError("method.ablation.sg_fraction must be > 0 (the share of pixels SG keeps), got 0")
        steps = self.new_first_steps
        if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 0):
            raise ValueError(f"method.ablation.new_first_steps must be a non-negative integer or null, got {steps!r}")


def _check_number(name: str, value, low: Optional[float] = None, high: Optional[float] = None):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"method.{name} must be a number, got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"[{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(f"method.{name} must be in {bounds}, got {value!r}")


def _group(cls, value: Any, name: str):
    """A group from its dataclass or a mapping, an unknown key named with the nearest valid one."""
    if isinstance(value, cls):
        return value
    if value is None:
        return cls()
    if not isinstance(value, dict):
        raise ValueError(f"method.{name} must be a mapping of switches, got {value!r}")
    valid = [f.name for f in dataclasses.fields(cls)]
    for key in value:
        if key not in valid:
            close = difflib.get_close_matches(str(key), valid, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ValueError(f"unknown option 'method.{name}.{key}'{hint}; valid: {', '.join(valid)}")
    return cls(**value)


#: the names that used to sit flat under `method.`: where each went (or why it is gone)
RENAMED = {**{n: f"is now 'method.mends.{n}'" for n in MENDS},
           **{f.name: f"is now 'method.ablation.{f.name}'" for f in dataclasses.fields(Ablation)},
           "td_ba": "was removed: the release parses it but never reads it (it had no effect)"}


@dataclass
class HADOptions(UpgradeOptions):
    """HAD's options. `mode` defaults to `fixed`, the better default beside the `had_faithful`
    preset, which reproduces the release bit for bit. The `upgrade_*` options act at an
    architecture upgrade (`lhl.methods.shared.upgrade`)."""

    renamed: ClassVar[Dict[str, str]] = RENAMED

    mode: str = "fixed"
    new: float = 3.0
    scalar_val: float = 0.9
    num_interval: float = 0.5
    sel_max: int = 1
    mends: Mends = field(default_factory=Mends)
    ablation: Ablation = field(default_factory=Ablation)

    def __post_init__(self):
        super().__post_init__()
        if self.mode not in MODES:
            raise ValueError(f"method.mode must be one of {MODES}, got {self.mode!r}")
        self.mends = _group(Mends, self.mends, "mends")
        self.ablation = _group(Ablation, self.ablation, "ablation")
        _check_number("new", self.new, low=0.0)
        _check_number("scalar_val", self.scalar_val, low=0.0, high=1.0)
        _check_number("num_interval", self.num_interval)
        if isinstance(self.sel_max, bool) or self.sel_max not in (0, 1, 2):
            raise ValueError(f"method.sel_max must be 0 (keep below scalar_val), 1 (above) or 2 (both tails), "
                             f"got {self.sel_max!r}")
        self._check_mode_rules()

    def _check_mode_rules(self) -> None:
        """Which switches each mode has: `paper` no mends and sel_max 1; the others no paper-only ablation."""
        a = self.ablation
        if self.sel_max != 1 and a.sg_select != "threshold":
            raise ValueError(f"method.sel_max={self.sel_max} picks a tail of the threshold; "
                             f"method.ablation.sg_select={a.sg_select!r} has none (keep sel_max 1)")
        if self.mode == "paper":
            mends = [f"mends.{n}" for n in MENDS if getattr(self.mends, n) is not None]
            mends += ["sel_max"] if self.sel_max != 1 else []
            if mends:
                raise ValueError(f"method.{mends[0]}: mode 'paper' has no release mends and keeps sel_max 1 "
                                 "(the paper's equations); use mode faithful or fixed")
            return
        wrong = sorted(k for k, v in PAPER_ONLY.items() if getattr(a, k) != v)
        if wrong:
            raise ValueError(f"method.ablation.{wrong[0]} exists only in HAD mode 'paper' (the per-image groups "
                             f"and salience of the paper's equations); mode is {self.mode!r}")

    @property
    def resolved_weighting(self) -> str:
        return self.ablation.weighting or ("paper" if self.mode == "paper" else "release")

    def loss_config(self) -> Union[HADConfig, PaperConfig]:
        """The settings the losses compute with: the mode's mends with explicit overrides, and the
        ablation switches (a null `db_weighting` keeps the mode's own)."""
        a = self.ablation
        common = dict(scalar_val=float(self.scalar_val), num_interval=float(self.num_interval), db=a.db, sg=a.sg,
                      group_mean=a.group_mean, sg_select=a.sg_select, sg_fraction=float(a.sg_fraction))
        if a.db_weighting is not None:
            common["db_weighting"] = a.db_weighting
        if self.mode == "paper":
            return PaperConfig(bins=a.bins, salience_source=a.salience_source, **common)
        return HADConfig(sel_max=int(self.sel_max), **self.mends.resolved(self.mode), **common)

    config = loss_config  # the name the tests and earlier code use

    @classmethod
    def from_flat(cls, mode: str = "fixed", **switches) -> "HADOptions":
        """Options from flat switch names (`db=False`, `full_cosine=True`, `scalar_val=0.7`): each
        goes to its group. The functional `had_loss` takes its switches this way."""
        mends = {k: switches.pop(k) for k in list(switches) if k in MENDS}
        ablation = {k: switches.pop(k) for k in list(switches) if k in {f.name for f in dataclasses.fields(Ablation)}}
        return cls(mode=mode, mends=mends, ablation=ablation, **switches)
