"""W&B offline (isolated env): one run across a requeued sequence, the global step axis, the final
summary; wandb's own rules for going offline; the batch size per process and the global batch."""
from __future__ import annotations

import json
import os
import signal
import struct
import warnings

import lightning.pytorch as pl
import pytest

from conftest import tiny_overrides
from lhl.config import ConfigError, load_config
from lhl.config.resolve import check_processes, per_process_batch
from lhl.engine import runner as runner_mod
from lhl.runs.identity import run_folder_of
from lhl.engine.loggers import wandb_group, wandb_offline_default
from lhl.engine.requeue import Requeued
from lhl.engine.runner import run


def _records(path):
    """The protobuf records of a .wandb transaction log (a LevelDB-style log: 7-byte file header,
    32 KiB blocks, records of checksum u32, length u16, type u8: 1 full, 2 first, 3 middle, 4 last)."""
    from wandb.proto import wandb_internal_pb2

    data, pos, buf, block = path.read_bytes(), 7, b"", 32768
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        if block - pos % block < 7:
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        buf = chunk if kind in (1, 2) else buf + chunk
        if kind in (1, 4):
            rec = wandb_internal_pb2.Record()
            rec.ParseFromString(buf)
            yield rec


def _items(items):
    return {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in items}


def _read(run_dir):
    """(history rows, summary updates merged, record types) of one offline run folder."""
    rows, summary, kinds = [], {}, []
    for rec in _records(next(run_dir.glob("*.wandb"))):
        kind = rec.WhichOneof("record_type")
        kinds.append(kind)
        if kind == "history":
            rows.append(_items(rec.history.item))
        elif kind == "summary":
            summary.update(_items(rec.summary.update))
    return rows, summary, kinds


class _SignalAt(pl.Callback):
    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if trainer.default_root_dir.endswith("phase_1") and trainer.global_step == 1:
            os.kill(os.getpid(), signal.SIGUSR1)


@pytest.fixture
def isolated_wandb(tmp_path, monkeypatch):
    """W&B in this test's own environment. wandb keeps one process-wide setup (its settings and
    its service process) from the first `wandb.init` of the pytest process, so it is torn down
    before and after: a test run after others then sees the settings set here, not those of an
    earlier test (whose tmp folders may be gone). No system-metrics sampler and no console
    capture: both add records on timers, by how long the run took."""
    wandb = pytest.importorskip("wandb")
    wandb.teardown()
    for k in list(os.environ):
        if k.startswith("WANDB_"):
            monkeypatch.delenv(k)
    monkeypatch.setenv("WANDB_MODE", "offline")  # restored after the test (Lightning sets it too)
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb_config"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("WANDB_X_DISABLE_STATS", "true")
    monkeypatch.setenv("WANDB_CONSOLE", "off")
    monkeypatch.setenv("WANDB_INIT_TIMEOUT", "600")  # a loaded machine starts the service slowly
    yield
    wandb.teardown()  # flushes and stops the service: every record is on disk


@pytest.mark.slow
def test_one_wandb_run_across_a_requeued_sequence(tmp_path, synth_cache, monkeypatch, isolated_wandb):
    """SIGUSR1 in phase 2 (fake SLURM): the W&B run is marked pre-empting and finished; the re-run
    continues the same run id; every row has a monotonic `step_global`; the summary holds the
    final metrics and forgetting; the CSV log is written beside it."""
    from test_requeue import slurm_env

    for k, v in slurm_env(tmp_path).items():
        if k.startswith("SLURM_") or k == "PATH":
            monkeypatch.setenv(k, v)
    args = tiny_overrides(tmp_path, synth_cache, **{
        "sequence.tasks": "[semantic,depth]", "method": "lwf", "model.backbone": "resnet10t",
        "train.max_steps": 3, "eval.gallery_samples": 0, "logger": "wandb"})
    with monkeypatch.context() as m:
        real = runner_mod.phase_trainer
        m.setattr(runner_mod, "phase_trainer",
                  lambda cfg, p, n, root, lg, extra=(): real(cfg, p, n, root, lg, [*extra, _SignalAt()]))
        with pytest.raises(Requeued):
            run(load_config([], args))
    folder = run_folder_of(load_config([], args))
    run_id = folder.wandb_run_id.read_text().strip()
    assert (tmp_path / "scontrol.log").is_file()
    run(load_config([], args))
    import wandb

    wandb.teardown()  # the service flushed and stopped: both transaction logs are complete
    offline = list((folder.root / "wandb").glob("offline-run-*"))
    assert len(offline) == 2 and all(p.name.endswith(f"-{run_id}") for p in offline)  # one run, resumed
    # which log is the first attempt: by content (its rows end at phase 2's step 1), not by the
    # folder names' start times to the second
    (rows1, _, kinds1), (rows2, summary, kinds2) = sorted(
        (_read(p) for p in offline), key=lambda r: min(x.get("step_global", 1e9) for x in r[0]))
    assert "preempting" in kinds1 and "exit" in kinds1 and "exit" in kinds2  # marked, then finished
    steps = [r["step_global"] for r in rows1 + rows2]
    assert steps == sorted(steps) and steps[-1] == 6  # 3 + 3 steps: the sequence's axis, not per phase
    assert any(r.get("trainer/global_step") == 0 for r in rows1[1:])  # what the axis would have been
    assert any("loss/total" in r for r in rows2) and any(k.startswith("phase_end/") for r in rows2 for k in r)
    assert {"final/semantic/miou", "final/depth/abs_err", "forgetting/semantic/miou"} <= set(summary)
    assert (folder.root / "logs" / "phase_1" / "metrics.csv").is_file()  # CSV beside W&B
    cfg = load_config([], args)
    assert wandb_group(cfg).startswith("synthetic_s1/lwf/")
    assert wandb_group(cfg) == wandb_group(load_config([], args + ["seed=3"]))  # seeds share a group
    assert wandb_group(cfg) != wandb_group(load_config([], args + ["train.lr=0.01"]))


def test_offline_follows_wandbs_rules(tmp_path, monkeypatch, isolated_wandb):
    monkeypatch.delenv("WANDB_MODE")
    assert wandb_offline_default()  # no key anywhere
    netrc = tmp_path / "netrc"
    netrc.write_text("machine api.wandb.ai\n  login user\n  password " + "a" * 40 + "\n")
    monkeypatch.setenv("NETRC", str(netrc))
    assert not wandb_offline_default()  # a $NETRC entry for the default host
    monkeypatch.setenv("WANDB_BASE_URL", "https://wandb.example.org")
    assert wandb_offline_default()  # ... but not for the configured host
    monkeypatch.delenv("WANDB_BASE_URL")
    settings = tmp_path / "wandb_config" / "settings"
    settings.parent.mkdir(parents=True, exist_ok=True)
    settings.write_text("[default]\nmode = offline\n")
    assert wandb_offline_default()  # wandb's settings file
    monkeypatch.setenv("WANDB_MODE", "online")
    assert not wandb_offline_default()
    monkeypatch.delenv("WANDB_MODE")
    settings.write_text("[default]\n")
    monkeypatch.delenv("NETRC")
    monkeypatch.setenv("WANDB_API_KEY", "b" * 40)
    assert not wandb_offline_default()


def test_batch_size_per_process_and_global_batch(tmp_path, synth_cache):
    cfg = load_config([], tiny_overrides(tmp_path, synth_cache))
    assert per_process_batch(cfg.data, 4) == cfg.data.batch_size == 4  # per process
    cfg.data.global_batch_size = 64
    assert per_process_batch(cfg.data, 4) == 16 and per_process_batch(cfg.data, 1) == 64
    with pytest.raises(ConfigError, match="global_batch_size=64 does not divide into 3"):
        per_process_batch(cfg.data, 3)
    with pytest.raises(ConfigError, match="does not divide into 3"):  # early, from train.devices
        load_config([], tiny_overrides(tmp_path, synth_cache, **{"data.global_batch_size": 64, "train.devices": 3}))
    mtan = load_config([], tiny_overrides(tmp_path, synth_cache, **{"eval.reduction": "mtan"}))
    with pytest.warns(UserWarning, match="eval.reduction=mtan runs on 2 processes"):
        check_processes(mtan, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_processes(mtan, 1)
        check_processes(cfg, 2)
