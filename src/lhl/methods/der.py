"""der / derpp: dark experience replay (Buzzega et al., NeurIPS 2020; Mammoth `models/der.py`, `derpp.py`).

`L = L_new + α · MSE(f(x'), z') [+ β · L_task(f(x''), y'')]`: x' is a reservoir draw and z' the
output the network gave that image when it was trained on it (the pre-step, train-mode output of
the very view the step used, captured from the step's own forward and stored after the step, so
nothing is recomputed); DER++ adds ER's replay loss on a second, independent draw.

Dense form: each stored image keeps the output of the head(s) of its phase, at the input size, in
fp16 (`ReservoirBuffer` extras `der/<task>`). Which output: for semantic tasks the logits, as
Mammoth stores logits; the step only holds log-probabilities, which differ from the logits by a
per-pixel constant, so both sides are centred over the classes (log p − mean_c log p = z − mean_c z:
exactly the logits up to the one direction softmax ignores). For every other task type the
activated output (depth and scalar maps raw, normals as unit vectors), the quantity the task's loss
and metrics read. The MSE is a mean over channels and pixels, computed in fp32, per task: its
scale depends on the task type, so each task's term is logged as `der/<task>` and α may be set per
task type (`alpha_by_kind`). A term is weighted by its task's share of the replayed samples, so
with one α the terms sum to α times the MSE over the draw, as in Mammoth.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Tuple

import torch
from torch import Tensor, nn

from lhl.core.registry import METHODS
from lhl.data.protocol import Phase
from lhl.methods.base import Knob, Step, Terms
from lhl.methods.er import ER, EROptions
from lhl.tasks.base import TaskSpec

PREFIX = "der/"


def comparable(spec: TaskSpec, output: Tensor) -> Tensor:
    """The output DER stores and matches: class-centred log-probabilities (= centred logits) for
    semantic tasks, the activated output otherwise."""
    if spec.kind == "semantic":
        return output - output.mean(dim=1, keepdim=True)
    return output


@dataclass
class DEROptions(EROptions):
    """DER's options (ER's buffer options, plus):

    alpha: weight of the logit-matching MSE (0.3: Mammoth's best DER arguments at small buffers).
    alpha_by_kind: α per task type ({semantic: ..., depth: ...}); types not listed use `alpha`.
    beta: weight of DER++'s label replay on a second draw (0 = plain DER; `derpp` sets it).
    """

    alpha: float = 0.3
    alpha_by_kind: Dict[str, float] = field(default_factory=dict)
    beta: float = 0.0

    def __post_init__(self):
        for name, value in [("alpha", self.alpha), ("beta", self.beta), *self.alpha_by_kind.items()]:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"method.{name} must be a number >= 0, got {value!r}")


@dataclass
class DERppOptions(DEROptions):
    """DER++: α = 0.1, β = 0.5 (Mammoth's best DER++ arguments at small buffers)."""

    alpha: float = 0.1
    beta: float = 0.5


@METHODS.register("der")
class DER(ER):
    Options = DEROptions
    stability = Knob("alpha", (0.0, 0.03, 0.1, 0.3, 1.0))

    def __init__(self, options, tasks):
        super().__init__(options, tasks)
        self._pending: Dict[str, Tensor] = {}

    def alpha(self, task: str) -> float:
        return float(self.opts.alpha_by_kind.get(self.tasks[task].kind, self.opts.alpha))

    def observe(self, batch: Dict[str, Tensor], phase: Phase) -> None:
        """Store the batch with its labels and the outputs the step computed on it (pre-step)."""
        labels = {t: batch[t] for t in phase.train_tasks if t in batch}
        outputs = {PREFIX + t: z for t, z in self._pending.items()}
        self._pending = {}
        if labels:
            self.buffer.add(batch["image"], labels, batch.get("index"), extras=outputs)

    def logit_terms(self, network: nn.Module, slots: Tensor, device: torch.device) -> Terms:
        """`der/<task>`: α_task · (share of the draw) · MSE(current, stored) per stored task."""
        buf = self.buffer
        groups: List[Tuple[str, Tensor]] = []
        for key, has in buf.has_extra.items():
            group = slots[has[slots]]
            if group.numel():
                groups.append((key[len(PREFIX):], group))
        total = sum(int(g.numel()) for _, g in groups)
        terms: Terms = {}
        for task, group in groups:
            count = group.numel()
            if count == 1:  # the heads' image-pooling BatchNorm cannot normalise one value
                group = group.repeat(2)
            images = buf.images[group].to(device, non_blocking=True)
            stored = buf.extras[PREFIX + task][group].to(device, non_blocking=True).float()
            current = comparable(self.tasks[task], network(images, [task])[task]).float()
            mse = (current - stored).pow(2).mean()
            terms[PREFIX + task] = self.alpha(task) * mse * (count / total)
        return terms

    def loss_terms(self, step: Step) -> Tuple[Terms, Terms]:
        """Supervised terms, the logit-matching terms on one draw and (β > 0) ER's replay on another;
        the step's own outputs on its trained tasks are kept for `observe`."""
        self._pending = {
            t: comparable(self.tasks[t], step.student[t].detach()).to(torch.float16)
            for t in step.phase.train_tasks if t in step.student
        }
        terms = self.supervised_terms(step)
        if len(self.buffer) > 0:
            images = step.batch["image"]
            wanted = self.opts.replay_batch or max(1, images.shape[0] // 4)
            terms.update(self.logit_terms(step.network, self.buffer.sample(wanted), images.device))
            if self.opts.beta > 0 and any(bool(h.any()) for h in self.buffer.has.values()):
                replayed = self.replay_loss(step.network, self.buffer.sample(wanted), images.device)
                terms["derpp/replay"] = self.opts.beta * replayed
        return terms, {}


@METHODS.register("derpp")
class DERpp(DER):
    Options = DERppOptions
    stability = Knob("alpha", (0.0, 0.03, 0.1, 0.3, 1.0), tied=(("beta", 5.0),))
