"""Single-task learning as a weighting: train on one task only."""

from __future__ import annotations

import torch
from torch import Tensor

from .base import LossWeighting

__all__ = ["STL"]


class STL(LossWeighting):
    """One-hot weights: only task ``task`` is trained (the single-task baseline behind Delta-m).

    A multi-task model trained with it is the reference's STL run; the trainer trains one model
    per task, ``STL(M, task=m)`` for ``m = 0..M-1``. The other tasks' heads receive zero gradients.

    Args:
        num_tasks: ``M``.
        task: index in ``[0, M)`` of the task to train (default 0).
        validate: check the loss values each step.
    """

    def __init__(self, num_tasks: int, task: int = 0, *, validate: bool = True):
        super().__init__(num_tasks, validate=validate)
        if isinstance(task, bool) or not isinstance(task, int) or not 0 <= task < self.num_tasks:
            raise ValueError(f"task must be an int in [0, num_tasks={self.num_tasks}), got {task!r}")
        self.task = task

    def weigh(self, losses: Tensor) -> Tensor:
        weights = torch.zeros_like(losses)
        weights[self.task] = 1
        self.record(losses=losses, weights=weights)
        return weights

    def extra_repr(self) -> str:
        return f"num_tasks={self.num_tasks}, task={self.task}"
