"""er: experience replay with a reservoir buffer (Chaudhry et al. 2019, "tiny episodic memories").

Every training sample the method observes enters a reservoir (Vitter's algorithm R) over the
whole stream of phases, so each sample seen so far is in the buffer with the same probability.
It is stored on CPU with the labels it came with (the tasks of its phase). Each step a few stored
samples are replayed: grouped by task, each group goes through `network(images, [task])` and its
task's supervised loss; the buffer and the sampling stream are part of the phase checkpoint. A
batch enters the reservoir after its own optimiser step (as in Mammoth's ER).

Under DDP the reservoir runs over the global batch (the ranks' batches in rank order): every rank
draws the same slots from the same generator and receives the kept rows from the ranks that hold
them, so every rank holds the same `buffer_size` images, the checkpoint (rank 0's) is every rank's
and a resumed run continues exactly. Each rank then replays its own share of one draw, as a single
process would replay the global batch's share.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn

from lhl.core.registry import METHODS
from lhl.data.protocol import Phase
from lhl.methods.base import Knob, Method, MethodOptions, Step, Terms
from lhl.methods.shared.reservoir import ReservoirBuffer


@dataclass
class EROptions(MethodOptions):
    """ER's options.

    buffer_size: images kept (50, the HAD release's rehearsal default).
    replay_batch: replayed samples per step, at most what the buffer holds; 8 as the HAD release's
      rehearsal mini-batch (`BaseLearner.add_rehearsal_args`: buffer_size=50, replay batch 8);
      per process under DDP, like `data.batch_size`.
      None (or 0) = a quarter of the training batch (16 at a batch of 64), at least 1.
    replay_weight: weight of the replay loss in the total loss.
    seed: seed of the buffer's own generator (set it from the run's seed).
    """

    buffer_size: int = 50
    replay_batch: Optional[int] = 8
    replay_weight: float = 1.0
    seed: int = 0


@METHODS.register("er")
class ER(Method):

    stability = Knob("replay_weight", (0.0, 0.3, 1.0, 3.0, 10.0))
    Options = EROptions

    def __init__(self, options, tasks):
        super().__init__(options, tasks)
        self.buffer = ReservoirBuffer(options.buffer_size, options.seed)

    def observe(self, batch: Dict[str, Tensor], phase: Phase) -> None:
        labels = {t: batch[t] for t in phase.train_tasks if t in batch}
        if labels:
            self.buffer.add(batch["image"], labels, batch.get("index"))

    def replay_loss(self, network: nn.Module, slots: Tensor, device: torch.device) -> Tensor:
        """Sample-weighted mean of each task's supervised loss on its replayed samples.

        A task group of one sample is duplicated: the heads' image-pooling BatchNorm cannot
        normalise a single value in train mode.
        """
        buf = self.buffer
        terms: List[Tensor] = []
        counts: List[int] = []
        for t in buf.has:
            group = slots[buf.has[t][slots]]
            if group.numel() == 0:
                continue
            counts.append(group.numel())
            if group.numel() == 1:
                group = group.repeat(2)
            images = buf.images[group].to(device, non_blocking=True)
            target = buf.labels[t][group].to(device, non_blocking=True)
            terms.append(self.tasks[t].loss(network(images, [t])[t], target) * counts[-1])
        return torch.stack(terms).sum() / sum(counts)

    def loss_terms(self, step: Step) -> Tuple[Terms, Terms]:
        """The supervised terms plus `replay_weight` x the replay loss (`er/replay`) once the buffer holds samples."""
        terms = self.supervised_terms(step)
        if len(self.buffer) > 0:
            images = step.batch["image"]
            wanted = self.opts.replay_batch or max(1, images.shape[0] // 4)
            replayed = self.replay_loss(step.network, self.buffer.sample(wanted), images.device)
            terms["er/replay"] = self.opts.replay_weight * replayed
        return terms, {}

    def state_dict(self) -> Dict[str, Any]:
        return {"buffer": self.buffer.state_dict()}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        if "buffer" in state:
            self.buffer.load_state_dict(state["buffer"])
