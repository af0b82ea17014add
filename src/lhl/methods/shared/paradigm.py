"""The paper's training-paradigm ablation, through the method hooks only (no engine change).

* `simultaneous` (default): every parameter learns L_new + the distillation terms.
* `old_decoders_only`: the backbone and the new head learn L_new only; the distillation terms
  train the old decoders only: a forward pre-hook on every old head detaches its input features,
  so no distillation gradient reaches the backbone (the old heads follow the moving backbone).
* `new_first`: the phase's first part learns the new task alone (L_new, no distillation, every
  parameter); the rest patches the old decoders: distillation only, and only the old heads
  step (every other gradient is dropped before the optimiser step, so weight decay and momentum
  leave those weights alone too). The first part lasts `new_first_steps` optimiser steps per
  phase, or when unset half of the previous phase's length (phases of the lifelong protocol
  train equal slices for the same number of epochs; phase 1 has no old task and trains whole).
* `new_decoder_only`: only the new task's head steps (backbone and old heads dropped), so the old
  tasks are kept exactly and the new one learns on the frozen features.
Frozen parts (here and in new_first's second part) also run in eval mode, so that their
batch-norm statistics do not move either.
"""
from __future__ import annotations

from typing import Dict, List, Optional

from torch import nn

from lhl.data.protocol import Phase

PARADIGMS = ("simultaneous", "old_decoders_only", "new_first", "new_decoder_only")


def _detach_inputs(module, args):
    return tuple(a.detach() if hasattr(a, "detach") else a for a in args)


class Paradigm:
    """Per-phase state of the paradigm: hooks, the step count and which heads may step."""

    def __init__(self, name: str, new_first_steps: Optional[int] = None):
        if name not in PARADIGMS:
            raise ValueError(f"method.ablation.paradigm must be one of {PARADIGMS}, got {name!r}")
        self.name, self.new_first_steps = name, new_first_steps
        self.steps, self.last_length, self.phase = 0, 0, None
        self.current: Optional[Phase] = None
        self._hooks: List = []

    # --- phase boundaries ---------------------------------------------------------------------
    def start(self, phase: Phase, network: nn.Module) -> None:
        if self.phase is not None and self.phase != phase.index:
            self.last_length = self.steps
        if self.phase != phase.index:
            self.steps = 0
        self.phase, self.current = phase.index, phase
        self.release()
        if self.name == "old_decoders_only":
            heads = getattr(network, "heads", {})
            self._hooks = [heads[t].register_forward_pre_hook(_detach_inputs) for t in phase.old_tasks if t in heads]
        elif self.name in ("new_first", "new_decoder_only"):
            self._hooks = [network.register_forward_pre_hook(self._freeze_modes)]

    def _freeze_modes(self, network, args) -> None:
        """Frozen parts run in eval mode, so their batch-norm statistics stay frozen too (Lightning
        sets train mode at every epoch start; this runs before every forward of the network)."""
        keep = self.trainable_heads()
        if keep is None or not network.training:
            return
        network.backbone.eval()
        for name, head in network.heads.items():
            if name not in keep:
                head.eval()

    def release(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks = []

    # --- per step -----------------------------------------------------------------------------
    def patching(self) -> bool:
        """new_first: whether this step is in the phase's second part (distillation only)."""
        if self.name != "new_first" or self.current is None or not self.current.old_tasks:
            return False
        first = self.new_first_steps if self.new_first_steps is not None else self.last_length // 2
        return self.steps >= first

    def counted(self) -> None:
        self.steps += 1

    def trainable_heads(self) -> Optional[List[str]]:
        """The heads whose parameters may step (None: every parameter)."""
        phase = self.current
        if phase is None or not phase.old_tasks:
            return None
        if self.name == "new_decoder_only":
            return list(phase.train_tasks)
        if self.name == "new_first" and self.patching():
            return list(phase.old_tasks)
        return None

    def drop_gradients(self, network: nn.Module) -> None:
        """Set to None every gradient outside the trainable heads (optimisers skip those weights)."""
        keep = self.trainable_heads()
        if keep is None:
            return
        kept = {id(p) for t in keep for p in network.heads[t].parameters()}
        for p in network.parameters():
            if id(p) not in kept:
                p.grad = None

    def state_dict(self) -> Dict[str, int]:
        return {"steps": self.steps, "last_length": self.last_length, "phase": -1 if self.phase is None else self.phase}

    def load_state_dict(self, state: Dict[str, int]) -> None:
        self.steps, self.last_length = int(state.get("steps", 0)), int(state.get("last_length", 0))
        self.phase = None if state.get("phase", -1) < 0 else int(state["phase"])
