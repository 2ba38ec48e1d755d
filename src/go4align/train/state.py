"""Where a run stands: the counters, sums and history that a checkpoint carries besides the
model, optimiser, scheduler, weighting, trace and random generators.

:class:`RunState` changes in two ways only: :meth:`RunState.count_step` after every step and
:meth:`RunState.next_epoch` after every epoch. It converts to and from the plain dict that a
checkpoint stores (tensors and plain values only, so that a weights-only load reads it).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import torch
from torch import Tensor

__all__ = ["RunState"]


@dataclass
class RunState:
    """The progress of one run.

    ``loss_sums`` may live on the training device during an epoch (adding to it needs no host
    synchronisation); :meth:`to_dict` hands out a CPU copy.
    """

    #: the data-order generator's state when the current epoch began: the epoch's order is redrawn from it
    data_order_at_epoch_start: Tensor
    #: per task, the float64 sum of the current epoch's losses over its counted (not skipped) steps
    loss_sums: Tensor
    epoch: int = 0  # epochs completed
    step_in_epoch: int = 0  # steps done in the current epoch, skipped ones included
    global_step: int = 0  # steps done in the run, skipped ones included
    epoch_time: float = 0.0  # training wall time of the current epoch so far, in seconds
    history: list[dict] = field(default_factory=list)  # one entry per completed epoch (result.json's "epochs")
    previous_peak_mb: float | None = None  # peak memory of the processes before a resume
    skipped_steps: int = 0  # steps dropped for non-finite losses, in the run
    skipped_in_epoch: int = 0  # ... and in the current epoch

    @classmethod
    def start(cls, num_tasks: int, data_order: torch.Generator) -> RunState:
        """The state of a run before its first step."""
        return cls(data_order.get_state(), torch.zeros(num_tasks, dtype=torch.float64))

    def count_step(self, losses: Tensor, skipped: bool) -> None:
        """One more step done; its ``losses`` count towards the epoch's mean unless it was skipped."""
        if skipped:
            self.skipped_steps += 1
            self.skipped_in_epoch += 1
        else:
            self.loss_sums += losses.double()
        self.step_in_epoch += 1
        self.global_step += 1

    def train_losses(self) -> Tensor:
        """The mean losses of the current epoch's counted steps (0 where none counted)."""
        return self.loss_sums / max(1, self.step_in_epoch - self.skipped_in_epoch)

    def next_epoch(self, entry: dict, data_order: torch.Generator) -> None:
        """Close the current epoch with its history ``entry``; the next one starts where
        ``data_order`` stands now."""
        self.history.append(entry)
        self.epoch += 1
        self.step_in_epoch = self.skipped_in_epoch = 0
        self.epoch_time = 0.0
        self.loss_sums = torch.zeros_like(self.loss_sums, device="cpu")
        self.data_order_at_epoch_start = data_order.get_state()

    def to_dict(self) -> dict:
        """Tensors and plain values, as a checkpoint stores them."""
        state = {f.name: getattr(self, f.name) for f in fields(self)}
        state["loss_sums"] = self.loss_sums.cpu()
        return state

    @classmethod
    def from_dict(cls, state: dict) -> RunState:
        """The inverse of :meth:`to_dict`; a ``ValueError`` names missing or unknown keys."""
        names = {f.name for f in fields(cls)}
        missing, unknown = sorted(names - set(state)), sorted(set(state) - names)
        if missing or unknown:
            raise ValueError(
                f"a run state needs exactly the keys {sorted(names)}: missing {missing}, unknown {unknown}"
            )
        return cls(**state)
