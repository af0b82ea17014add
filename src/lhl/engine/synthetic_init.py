"""`model.init: synthetic_pretrained`: a backbone pretrained once, task-agnostically, on synthetic rooms.

It plays ImageNet's role for the CPU presets (the release starts from ImageNet weights; a network
trained from scratch on a third of a few hundred views ends every phase far from converged). The
pretraining set is disjoint from every sequence's (its own generator seed, `PRETRAIN["seed"]`) and
its objective is none of the sequences' tasks: per-pixel *material family*
(`lhl.data.synthetic_rooms.materials.MATERIALS`, cross-entropy through an ASPP head that is then
dropped). The weights are a pure function of the backbone's settings, the view size and
`PRETRAIN`: computed once and cached as `$LHL_CACHE/init/synthetic_pretrained-<key>.pt` (written
atomically; a second process asking for it meanwhile waits on a lock file beside it and reads the
first one's; where file locks do not hold, both compute the same weights and the last rename wins).
"""
from __future__ import annotations

import hashlib
import json
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lhl.config.resolve import timm_kwargs
from lhl.core.errors import UsageError
from lhl.core.io import atomic_torch_save
from lhl.core.locks import build_lock
from lhl.data.synthetic_rooms.materials import MATERIALS
from lhl.data.synthetic_rooms.writer import GENERATOR_VERSION, cache_home, generate_sample
from lhl.models.backbone import Backbone
from lhl.models.heads import ASPPHead, upsample_to

INITS = ("scratch", "synthetic_pretrained")
#: the pretraining recipe; bump INIT_VERSION when the code below changes what it computes
PRETRAIN = {"seed": 7919, "n_views": 600, "epochs": 6, "batch_size": 16, "lr": 1e-3, "head_width": 64}
#: 2: pretrained on one thread (version 1 used the caller's threads, so its weights depended on them)
INIT_VERSION = 2
#: view size when the run's dataset is not synthetic rooms (height, width)
DEFAULT_SIZE = (64, 80)


def init_key(model_cfg, size: Tuple[int, int]) -> Dict:
    """Everything the cached weights depend on."""
    key = {
        "backbone": str(model_cfg.backbone), "output_stride": int(model_cfg.output_stride),
        "zero_init_last": bool(model_cfg.zero_init_last), "size": [int(s) for s in size],
        "recipe": PRETRAIN, "generator": GENERATOR_VERSION, "version": INIT_VERSION,
    }
    extra = timm_kwargs(model_cfg)
    if extra:  # only when set, so the caches made before the key existed stay valid
        key["timm_kwargs"] = extra
    return key


def cache_file(key: Dict, cache=None) -> Path:
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    return Path(cache or cache_home()) / "init" / f"synthetic_pretrained-{digest}.pt"


def pretraining_views(size: Tuple[int, int], n_views: int, seed: int) -> Tuple[Tensor, Tensor]:
    """Images [N, 3, H, W] in [0, 1] and material labels [N, H, W] (-1 in sensor holes)."""
    images, labels = [], []
    for i in range(n_views):
        view = generate_sample(seed, "train", i, size[0], size[1])
        images.append(np.moveaxis(view["image"], -1, 0))
        labels.append(view["material"])
    return torch.from_numpy(np.stack(images)).float(), torch.from_numpy(np.stack(labels)).long()


@contextmanager
def _one_thread():
    """torch on one intra-op thread, the caller's count restored after: CPU kernels split their sums
    by thread, so the pretrained weights (and every run that starts from them) would otherwise
    depend on the machine's core count (measured: seed 0's semantic mIoU after its phase on
    `synthetic_s1`, 0.261 from a 1-thread pretraining against 0.280 from a 2-thread one)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def pretrain_backbone(model_cfg, size: Tuple[int, int], recipe: Optional[Dict] = None, log=print) -> Dict[str, Tensor]:
    """Train backbone + a material ASPP head from scratch with Adam (`recipe`: default PRETRAIN) on
    one thread, so the weights are the same whatever the machine's core count (for a given torch
    build and CPU); return the backbone's state."""
    recipe = PRETRAIN if recipe is None else recipe
    gen = torch.Generator().manual_seed(recipe["seed"])
    with torch.random.fork_rng(), _one_thread():
        torch.manual_seed(recipe["seed"])
        backbone = Backbone(model_cfg.backbone, False, model_cfg.output_stride, model_cfg.zero_init_last,
                            timm_kwargs(model_cfg))
        head = ASPPHead(backbone.out_channels, len(MATERIALS), recipe["head_width"], (1, 2, 3), 0.1)
        net = nn.Sequential(backbone, head).train()
        images, labels = pretraining_views(size, recipe["n_views"], recipe["seed"])
        opt = torch.optim.Adam(net.parameters(), lr=recipe["lr"])
        bs, losses = recipe["batch_size"], []
        for epoch in range(recipe["epochs"]):
            order = torch.randperm(len(images), generator=gen)
            for start in range(0, len(order) - bs + 1, bs):
                idx = order[start:start + bs]
                logits = upsample_to(net(images[idx]), size)
                loss = F.cross_entropy(logits, labels[idx], ignore_index=-1)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                losses.append(loss.item())
            log(f"  pretraining epoch {epoch + 1}/{recipe['epochs']}: material loss {np.mean(losses[-10:]):.3f}")
    return {k: v.detach().clone() for k, v in backbone.state_dict().items()}


def synthetic_pretrained_state(model_cfg, size: Tuple[int, int], cache=None, log=print) -> Dict[str, Tensor]:
    """The cached pretrained backbone state, computed (and cached) on first use."""
    key = init_key(model_cfg, size)
    path = cache_file(key, cache)
    if not path.exists():
        with build_lock(path.with_name(f".{path.name}.lock"), log=log):  # a second process waits, then reads it
            if not path.exists():
                log(f"model.init=synthetic_pretrained: pretraining {key['backbone']} once on {PRETRAIN['n_views']} "
                    f"synthetic views at {size[0]}x{size[1]} (material families, seed {PRETRAIN['seed']}) into {path}")
                start = time.time()
                state = pretrain_backbone(model_cfg, size, log=log)
                atomic_torch_save({"key": key, "state_dict": state}, path)
                log(f"  pretrained in {time.time() - start:.0f} s; later runs read the cache")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file gets the same advice
        raise RuntimeError(f"model.init=synthetic_pretrained: cannot read {path} ({err}); "
                           "fix: delete the file so the backbone is pretrained again") from err
    if saved.get("key") != json.loads(json.dumps(key)):
        raise RuntimeError(f"model.init=synthetic_pretrained: {path} was made for {saved.get('key')}, not "
                           f"{key}; fix: delete the file so the backbone is pretrained again")
    return saved["state_dict"]


def init_size(cfg) -> Tuple[int, int]:
    """The run's view size when it trains on synthetic rooms, else DEFAULT_SIZE."""
    if str(cfg.data.dataset) == "synthetic":
        opts = cfg.data.get("options") or {}
        return int(opts.get("height", 96)), int(opts.get("width", 128))
    return DEFAULT_SIZE


def apply_init(net, cfg, log=print) -> None:
    """Load the backbone weights `model.init` names into `net.backbone` (scratch: nothing)."""
    init = str(cfg.model.get("init", "scratch"))
    if init not in INITS:
        raise UsageError(f"model.init={init!r}: choose one of {', '.join(INITS)}")
    if init == "scratch":
        return
    if cfg.model.pretrained:
        raise UsageError("model.init=synthetic_pretrained and model.pretrained=true both set the backbone's "
                         "weights; fix: set model.pretrained=false (or model.init=scratch for ImageNet weights)")
    net.backbone.load_state_dict(synthetic_pretrained_state(cfg.model, init_size(cfg), log=log))
