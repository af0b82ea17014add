"""The HAD method: the old-task loop (`PseudoLabelDistillation`), the release's / paper's factor on
the old terms, and the paper's training paradigms through the method hooks."""
from __future__ import annotations

from typing import Dict, Tuple

from torch import Tensor

from lhl.core.registry import METHODS
from lhl.losses.had_paper import PaperConfig
from lhl.losses.had_terms import HAD_TERMS
from lhl.methods.base import Knob, Step, Terms
from lhl.methods.had.dispatch import old_task_had
from lhl.methods.had.options import HADOptions
from lhl.methods.shared.distillation import PseudoLabelDistillation
from lhl.methods.shared.paradigm import Paradigm


@METHODS.register("had")
class HAD(PseudoLabelDistillation):
    """HAD's distillation on every old task; `lhl.methods.had` describes the modes and switches."""

    log_prefix = "had"

    Options = HADOptions
    stability = Knob("new", (0.0, 0.3, 1.0, 3.0, 10.0), zero_is_finetune=True)  # `lhl tune`'s grid, every mode

    def __init__(self, options: HADOptions, tasks):
        super().__init__(options, tasks)
        self.config = options.loss_config()
        unsupported = {n: t.kind for n, t in tasks.items() if t.kind not in HAD_TERMS}
        if unsupported:  # refused when the run is built, not at the first step of phase 2
            raise ValueError(
                f"method had: no HAD terms for the task type(s) {unsupported}; supported: "
                f"{', '.join(sorted(HAD_TERMS))} (add the kind to lhl.losses.had_terms.HAD_TERMS)"
            )

        self.paradigm = Paradigm(options.ablation.paradigm, options.ablation.new_first_steps)

    def old_task_term(self, name: str, student: Tensor, pseudo: Tensor) -> Tuple[Tensor, Dict[str, Tensor]]:
        return old_task_had(self.tasks[name], student, pseudo, self.config, self.pixel_map_sink(name))

    def weight(self, step: Step) -> float:
        """The factor of every old term. On Σ_j (DB_j + SG_j): paper = new / (2 (t - 1)), release
        = new / 2, where t is the 1-based phase number, so t - 1 = `phase.index`, the number of
        earlier phases (= of old tasks in the one-task-per-phase protocol). The faithful / fixed
        terms already hold the / 2, the paper's do not."""
        factor = float(self.opts.new)
        if self.opts.resolved_weighting == "paper":
            factor /= max(1, step.phase.index)
        return factor / 2 if isinstance(self.config, PaperConfig) else factor

    def loss_terms(self, step: Step) -> Tuple[Terms, Terms]:
        terms, diagnostics = super().loss_terms(step)
        if self.paradigm.name == "new_first" and step.phase.old_tasks:
            patching = self.paradigm.patching()
            old = [f"{p}/{t}" for t in step.phase.old_tasks for p in (self.log_prefix, "upgrade_akd", "upgrade_proj")]
            keep = old if patching else list(step.phase.train_tasks)
            terms = {k: v for k, v in terms.items() if k in keep}
            diagnostics[f"{self.log_prefix}/patching"] = step.student[step.phase.train_tasks[0]].new_tensor(float(patching))
        return terms, diagnostics

    # --- the training paradigm (methods/shared/paradigm.py) ---------------------------------------
    def on_phase_start(self, phase, network) -> None:
        self.paradigm.start(phase, network)

    def on_phase_end(self, phase, network, train_loader) -> None:
        self.paradigm.release()

    def before_optimizer_step(self, network) -> None:
        self.paradigm.drop_gradients(network)

    def after_optimizer_step(self, network) -> None:
        self.paradigm.counted()

    def state_dict(self):
        return {"paradigm": self.paradigm.state_dict()}

    def load_state_dict(self, state) -> None:
        if "paradigm" in state:
            self.paradigm.load_state_dict(state["paradigm"])
