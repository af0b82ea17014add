"""lhl's contact with Lightning: the public API where it has one, and a named test for every private
attribute still read, so that a Lightning version that changes it fails here, not in a run."""
from __future__ import annotations

import configparser
from pathlib import Path

import lightning
import lightning.pytorch as pl
import torch
from omegaconf import OmegaConf
from packaging.requirements import Requirement
from packaging.version import Version
from torch.utils.data import DataLoader

from lhl.config import Config
from lhl.core.registry import METHODS
from lhl.data.protocol import Phase
from lhl.engine.lifelong_module import LifelongModule
from lhl.engine.mid_phase import AtomicCheckpointIO, mid_phase_checkpoint
from lhl.engine.teacher import ObserveBatches
from lhl.models import MultiHeadPredictor
from lhl.tasks import build_task

SETUP_CFG = Path(__file__).resolve().parents[1] / "setup.cfg"


def _module(method: str = "finetune", **train):
    torch.manual_seed(0)
    net = MultiHeadPredictor(head_width=8, aspp_rates=(1, 2, 3))
    specs = {"depth": build_task("depth", "depth", 1)}
    net.add_head(specs["depth"])
    cls = METHODS.get(method)
    cfg = OmegaConf.merge(OmegaConf.structured(Config).train, train)
    return LifelongModule(net, cls(cls.Options(), specs), Phase(0, ("depth",), (), ("depth",), 0), cfg)


def _data(n: int = 8):
    return DataLoader([{"image": torch.rand(3, 32, 32), "depth": torch.rand(1, 32, 32) + 0.5} for _ in range(n)],
                      batch_size=2)


def _trainer(tmp_path, **kw):
    base = dict(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                enable_model_summary=False, default_root_dir=str(tmp_path))
    return pl.Trainer(**{**base, **kw})


def test_the_logging_decision_is_lightnings_own(tmp_path):
    """`_writes_logs` (public attributes only) against Lightning's private `should_update_logs`, at
    every step of a fit that stops in mid-interval (the stopping step logs too)."""
    seen = []

    class Probe(LifelongModule):
        def training_step(self, batch, batch_idx):
            seen.append((self.global_step, self._writes_logs(), self.trainer._logger_connector.should_update_logs))
            return super().training_step(batch, batch_idx)

    module = _module()
    module.__class__ = Probe
    _trainer(tmp_path, max_steps=7, log_every_n_steps=3,
             logger=pl.loggers.CSVLogger(str(tmp_path))).fit(module, _data(16))
    assert [s for s, *_ in seen] == list(range(7))
    assert [ours for _, ours, _ in seen] == [theirs for *_, theirs in seen]
    assert [s for s, ours, _ in seen if ours] == [2, 5]  # steps 3 and 6 (1-based)


def test_batches_observed_before_the_checkpoint_and_the_private_attributes_lhl_reads(tmp_path):
    """One fit: `ObserveBatches` shows the method each trained batch once, before the mid-phase
    checkpoint of that step (Lightning moves `ModelCheckpoint` callbacks behind every other one), the
    checkpoint is written beside and renamed; and the private attributes lhl still reads exist:
    where and at which step `ModelCheckpoint` last saved (`MidPhaseCheckpoint.on_validation_end`),
    `LightningModule._trainer` (is the module attached?) and the loop's batch progress (the
    resumable loader)."""
    order = []
    last = mid_phase_checkpoint(OmegaConf.create({"checkpoint_every_steps": 2}), tmp_path)
    assert last._last_checkpoint_saved == "" and last._last_global_step_saved == 0
    last.on_save_checkpoint = lambda *a: order.append("save")
    module = _module("er")
    module.method.observe = lambda batch, phase: order.append(batch["image"].shape[0])
    assert module._trainer is None
    trainer = _trainer(tmp_path, max_steps=4, callbacks=[last, ObserveBatches()], enable_checkpointing=True,
                       plugins=[AtomicCheckpointIO()])
    trainer.fit(module, _data())
    assert order == [2, 2, "save", 2, 2, "save"]
    assert (tmp_path / "last.ckpt").is_file() and not list(tmp_path.glob("*.tmp"))
    assert last._last_global_step_saved == 4 and Path(last._last_checkpoint_saved).name == "last.ckpt"
    assert module._trainer is trainer
    assert trainer.fit_loop.epoch_loop.batch_progress.current.processed == 4  # the epoch's 4 batches


def test_the_installed_lightning_is_in_the_supported_range():
    """setup.cfg bounds lightning above (the newest minor tested); CI installs within it, and this
    fails where an environment holds a version outside it."""
    parser = configparser.ConfigParser()
    parser.read(SETUP_CFG)
    reqs = [Requirement(line) for line in parser["options"]["install_requires"].split("\n") if line.strip()]
    spec = next(r.specifier for r in reqs if r.name == "lightning")
    assert any(s.operator == "<" for s in spec), f"setup.cfg: lightning{spec} has no upper bound"
    assert Version(lightning.__version__) in spec, f"lightning {lightning.__version__} outside setup.cfg's {spec}"
