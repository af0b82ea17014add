"""icarl: exemplar rehearsal chosen by herding plus distillation (Rebuffi et al., CVPR 2017; Mammoth
`models/icarl.py`), adapted to heterogeneous dense tasks.

The nearest-mean-of-exemplars classifier is dropped: a class mean in feature space has no meaning
for depth, normals or scalar maps, and every task keeps its own head. What remains:
- a fixed budget of `exemplars` images (K, 50) shared over the tasks seen: m = ⌊K / t⌋ per task after
  t tasks, chosen at each phase end by herding on the L2-normalised, globally pooled backbone
  features of the phase's training data (`shared/herding.py`); old sets shrink to their first m
  (herding order is prefix-optimal);
- in later phases each step replays `replay_batch` exemplars: on its own task's head with its own
  labels (`icarl/replay`, like ER's replay), and on every other old head against the teacher's
  pseudo-label (`icarl/exemplar/<task>`, weight `new`);
- every old head is distilled from the teacher on the new images (`icarl/<task>`, weight `new`),
  the pseudo-label terms of `PseudoLabelDistillation` (LwF's).
The teacher of phase t+1 is the network at the end of phase t in eval mode, so the exemplars'
pseudo-labels are computed once, at that phase end, from the same network: exactly the teacher's.
Exemplars, their pseudo-labels and the draw generator are in the phase checkpoint. Under DDP every
rank gathers all features and indices and selects the same exemplars.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

import torch
from torch import Tensor, nn

from lhl.core.distributed import rank_and_world
from lhl.core.registry import METHODS
from lhl.data.protocol import Phase
from lhl.methods.base import Knob, MethodOptions, Step, Terms
from lhl.methods.shared.distillation import PseudoLabelDistillation
from lhl.methods.shared.herding import herding_order, load_samples, pooled_features
from lhl.methods.shared.quadratic import estimation_mode, parameter_device


@dataclass
class ICaRLOptions(MethodOptions):
    """iCaRL's options.

    exemplars: total exemplar budget K shared over the tasks seen (50, the release's buffer size).
    new: weight of every distillation term (3, as LwF / HAD).
    replay_batch: exemplars replayed per step (8, the release's rehearsal mini-batch).
    replay_weight: weight of the exemplars' own-label loss.
    feature_batches: most batches of the phase's loader used for herding (None = all).
    seed: seed of the exemplar draws (set from the run's seed).
    """

    exemplars: int = 50
    new: float = 3.0
    replay_batch: int = 8
    replay_weight: float = 1.0
    feature_batches: Optional[int] = None
    seed: int = 0

    def __post_init__(self):
        if self.exemplars < 1 or self.replay_batch < 1:
            raise ValueError("method.exemplars and method.replay_batch must be >= 1")


@METHODS.register("icarl")
class ICaRL(PseudoLabelDistillation):

    stability = Knob("new", (0.0, 0.3, 1.0, 3.0, 10.0))
    Options = ICaRLOptions
    log_prefix = "icarl"

    def __init__(self, options, tasks):
        super().__init__(options, tasks)
        self.generator = torch.Generator().manual_seed(int(options.seed))
        #: per task: {"image", "label", "index"} in herding order, and {"pseudo": {head: label}}
        self.sets: Dict[str, Dict[str, Any]] = {}

    def old_task_term(self, name: str, student: Tensor, pseudo: Tensor) -> Tuple[Tensor, Dict[str, Tensor]]:
        return self.plain_term(name, student, pseudo), {}

    # --- exemplar selection -------------------------------------------------------------------
    @torch.no_grad()
    def on_phase_end(self, phase: Phase, network: nn.Module, train_loader) -> None:
        """Herding on the phase's data, shrink old sets to ⌊K/t⌋, pseudo-label every set."""
        per_task = self.opts.exemplars // max(1, len(phase.seen_tasks))
        for t in list(self.sets):
            if t not in phase.seen_tasks:  # a fresh model forgot it
                del self.sets[t]
        for s in self.sets.values():
            for k in ("image", "label", "index"):
                s[k] = s[k][:per_task]
        if per_task > 0 and phase.train_tasks:
            features, indices = pooled_features(network, train_loader, self.opts.feature_batches)
            chosen = indices[herding_order(features, per_task)]
            samples = load_samples(train_loader, chosen)
            for t in phase.train_tasks:
                if t in samples:
                    self.sets[t] = {"image": samples["image"], "label": samples[t], "index": chosen}
        device = parameter_device(network)
        with estimation_mode(network), torch.no_grad():
            for t, s in self.sets.items():
                others = [h for h in phase.seen_tasks if h != t]
                out = network(s["image"].to(device), others) if others else {}
                s["pseudo"] = {h: self.tasks[h].pseudo_label(out[h]).cpu() for h in others}

    # --- training -----------------------------------------------------------------------------
    def draw(self, count: int) -> Tuple[list, Tensor]:
        """(owner task per exemplar, position in its set) of `count` distinct exemplars; under DDP
        every rank draws the same permutation and replays its own block (as `ReservoirBuffer`)."""
        rank, _ = rank_and_world()
        owners = [(t, i) for t, s in self.sets.items() for i in range(len(s["index"]))]
        take = min(count, len(owners))
        perm = torch.randperm(len(owners), generator=self.generator)
        picked = perm[(rank * take + torch.arange(take)) % len(owners)]
        return [owners[int(p)] for p in picked], picked

    def exemplar_terms(self, step: Step) -> Terms:
        """Own-label replay and pseudo-label distillation of the other old heads on a draw."""
        old = [t for t in step.phase.old_tasks if t in self.sets]
        drawn, _ = self.draw(self.opts.replay_batch)
        drawn = [(t, i) for t, i in drawn if t in old]
        if not drawn:
            return {}
        device = step.batch["image"].device
        replay, distill, total = [], {}, len(drawn)
        for owner in dict.fromkeys(t for t, _ in drawn):
            rows = torch.tensor([i for t, i in drawn if t == owner])
            count = rows.numel()
            if count == 1:  # the heads' image-pooling BatchNorm cannot normalise one value
                rows = rows.repeat(2)
            s = self.sets[owner]
            heads = [owner] + [h for h in step.phase.old_tasks if h != owner and h in s["pseudo"]]
            out = step.network(s["image"][rows].to(device), heads)
            replay.append(self.tasks[owner].loss(out[owner], s["label"][rows].to(device)) * count)
            for h in heads[1:]:
                term = self.tasks[h].loss(out[h], s["pseudo"][h][rows].to(device)) * (count / total)
                distill[h] = distill[h] + term if h in distill else term
        terms = {f"{self.log_prefix}/replay": self.opts.replay_weight * torch.stack(replay).sum() / total}
        terms.update({f"{self.log_prefix}/exemplar/{h}": self.weight(step) * v for h, v in distill.items()})
        return terms

    def loss_terms(self, step: Step) -> Tuple[Terms, Terms]:
        terms, diagnostics = super().loss_terms(step)
        if self.sets and step.phase.old_tasks:
            terms.update(self.exemplar_terms(step))
        return terms, diagnostics

    def state_dict(self) -> Dict[str, Any]:
        return {"generator": self.generator.get_state(), "sets": self.sets}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        if "generator" in state:
            self.generator.set_state(state["generator"])
        self.sets = {t: dict(s) for t, s in state.get("sets", {}).items()}
