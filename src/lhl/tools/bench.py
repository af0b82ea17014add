"""`lhl bench`: training-step throughput of finetune, LwF and HAD at phase 3 of an nyu_s1-shaped
sequence (current task: normals; old tasks: semantic and depth, with their teacher), and the step
cost against the number of old heads, which must stay flat in teacher backbone passes.

Runs the real `LifelongModule.training_step` (student pass, teacher pass, method loss) plus backward
and an Adam step on made-up NYUv2-shaped arrays. Results go to a JSON file (written atomically).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import time
import warnings
from pathlib import Path
from typing import Dict, List

import torch
from omegaconf import OmegaConf

from lhl.config import Config
from lhl.core.io import atomic_write_json
from lhl.core.machine import machine_info
from lhl.methods import METHODS
from lhl.data.protocol import Phase
from lhl.models import MultiHeadPredictor
from lhl.engine.lifelong_module import LifelongModule
from lhl.models.frozen import freeze_copy
from lhl.tasks import build_task

NYU_TASKS = [("semantic", "semantic", 13), ("depth", "depth", 1), ("normal", "normal", 3)]


def _batch(tasks, b: int, h: int, w: int, device) -> Dict[str, torch.Tensor]:
    """A made-up batch: random images and each task type's `example_label`."""
    g = torch.Generator().manual_seed(0)
    batch = {"image": torch.rand(b, 3, h, w, generator=g)}
    for name, kind, ch in tasks:
        batch[name] = build_task(kind, name, ch).example_label(b, h, w, g)
    return {k: v.to(device) for k, v in batch.items()}


def _module(method_name: str, tasks, current: str, args, device) -> LifelongModule:
    torch.manual_seed(0)
    net = MultiHeadPredictor(backbone=args.backbone, head_width=args.head_width, aspp_rates=args.aspp_rates)
    specs = {}
    for name, kind, ch in tasks:
        specs[name] = build_task(kind, name, ch)
        net.add_head(specs[name])
    cls = METHODS.get(method_name)
    method = cls(cls.Options(), specs)
    old = [n for n, _, _ in tasks if n != current]
    train_cfg = OmegaConf.structured(Config).train
    phase = Phase(len(old), (current,), tuple(old), (current,), slice=0)
    module = LifelongModule(net, method, phase, train_cfg)
    if method.uses_teacher:
        module.set_teacher(freeze_copy(net, old))
    module.to(device)
    if module.teacher is not None:
        module.teacher.to(device)
    if args.channels_last:
        module.to(memory_format=torch.channels_last)
    return module


def time_steps(module: LifelongModule, batch, steps: int, warmup: int, precision: str) -> Dict[str, float]:
    """Seconds per full training step (forward, loss, backward, Adam), averaged over `steps`."""
    device = batch["image"].device
    opt = module.configure_optimizers()
    teacher_calls = [0]
    if module.teacher is not None:
        module.teacher.backbone.register_forward_hook(lambda *a: teacher_calls.__setitem__(0, teacher_calls[0] + 1))
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16-mixed")

    def step():
        with autocast:
            loss = module.training_step(batch, 0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    module.train()
    for _ in range(warmup):
        step()
    teacher_calls[0] = 0
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    dt = (time.perf_counter() - t0) / steps
    b = batch["image"].shape[0]
    return {"s_per_step": dt, "img_per_s": b / dt, "teacher_backbone_passes_per_step": teacher_calls[0] / steps}


def run_bench(args) -> Dict:
    device = torch.device(args.device)
    out: Dict = {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        **machine_info(device),  # device, cpu_capability, threads, torch
        "setting": {k: v for k, v in vars(args).items() if k != "out"},
        "methods": {},
        "old_heads": {},
    }
    batch = _batch(NYU_TASKS, args.batch, args.height, args.width, device)
    for name in args.methods:
        module = _module(name, NYU_TASKS, "normal", args, device)
        out["methods"][name] = time_steps(module, batch, args.steps, args.warmup, args.precision)
        print(f"{name:>10}: {out['methods'][name]['s_per_step'] * 1000:8.1f} ms/step  "
              f"{out['methods'][name]['img_per_s']:8.1f} img/s", flush=True)
    m = out["methods"]
    if "had" in m and "lwf" in m:
        out["had_over_lwf"] = m["had"]["s_per_step"] / m["lwf"]["s_per_step"]
        print(f"HAD / LwF step time: {out['had_over_lwf']:.3f}", flush=True)
    for k in args.old_heads:
        tasks = [(f"sem{i}", "semantic", 13) for i in range(k)] + [("normal", "normal", 3)]
        b = _batch(tasks, args.batch, args.height, args.width, device)
        module = _module("had", tasks, "normal", args, device)
        out["old_heads"][str(k)] = time_steps(module, b, max(2, args.steps // 2), 1, args.precision)
        r = out["old_heads"][str(k)]
        print(f"HAD, {k} old heads: {r['s_per_step'] * 1000:8.1f} ms/step, "
              f"{r['teacher_backbone_passes_per_step']:.0f} teacher backbone pass(es)/step", flush=True)
    return out


def cli(argv: List[str]) -> int:
    p = argparse.ArgumentParser(prog="lhl bench", description=__doc__.splitlines()[0])
    cuda = torch.cuda.is_available()
    p.add_argument("--device", default="cuda" if cuda else "cpu")
    p.add_argument("--batch", type=int, default=64 if cuda else 16)
    p.add_argument("--height", type=int, default=288 if cuda else 96)
    p.add_argument("--width", type=int, default=384 if cuda else 128)
    p.add_argument("--backbone", default="resnet18")
    p.add_argument("--head-width", type=int, default=256 if cuda else 64)
    p.add_argument("--aspp-rates", nargs=3, type=int, default=[12, 24, 36] if cuda else [2, 4, 6])
    p.add_argument("--precision", default="bf16-mixed" if cuda else "32-true")
    p.add_argument("--channels-last", action="store_true", default=cuda)
    p.add_argument("--steps", type=int, default=20 if cuda else 8)
    p.add_argument("--warmup", type=int, default=5 if cuda else 2)
    p.add_argument("--methods", nargs="+", default=["finetune", "lwf", "had"])
    p.add_argument("--old-heads", nargs="*", type=int, default=[1, 2, 4, 8])
    p.add_argument("--out", default=None, help="JSON file (default bench/<device>.json)")
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore", message=".*self.log.*")
    result = run_bench(args)
    out = Path(args.out or f"bench/{'cuda' if args.device.startswith('cuda') else 'cpu'}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out, result)
    print(f"written: {out}")
    return 0
