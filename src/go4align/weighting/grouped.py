"""Adaptive group risk minimisation on top of any weighting method (GO4Align Table 4)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from .base import LossWeighting, Weighting
from .grouping import Grouping

__all__ = ["Grouped"]


class Grouped(LossWeighting):
    """Use another method's task weights as group indicators, then give every task its group's
    mean weight (the paper's Table 4: "their updated task weights as group indicators").

    The inner method keeps its own state and trainable parameters: its objective is evaluated on
    the detached losses and added, so that only its own parameters (UW's log-variances) receive
    gradients from it, while the model receives ``sum_m w_group(m) * grad L_m``.

    Args:
        method: a loss-oriented weighting (``LossWeighting``) with the same ``num_tasks``.
        num_groups, clustering, group_weights, seed: as for :class:`~go4align.weighting.grouping.Grouping`.
    """

    def __init__(
        self,
        method: Weighting,
        num_groups: int = 2,
        *,
        clustering: str | Sequence[int] | Callable[[Tensor, int], Tensor] = "exact",
        group_weights: Sequence[float] | str | None = None,
        seed: int = 0,
    ):
        if not isinstance(method, LossWeighting):
            raise TypeError(f"Grouped wraps a loss-oriented method (a LossWeighting), got {type(method).__name__}")
        super().__init__(method.num_tasks, validate=method.validate)
        self.method = method
        # the inner method's loss policy, checked before its weigh() sees the losses (FAMO's
        # refusal of negative ones: its weights for [-0.5, 4, 9] are negative)
        self.positive_losses = method.positive_losses
        self.nonnegative_losses = method.nonnegative_losses
        self.grouping = Grouping(method.num_tasks, num_groups, clustering, group_weights, seed)

    def weigh(self, losses: Tensor) -> Tensor:
        inner = self.method.weigh(losses)
        assignment = self.grouping(inner.detach().to(torch.float64))
        weights = assignment.weights
        self.method.count_step()
        # for the inner objective, which reaches only the inner method's own parameters (the
        # losses are detached); kept until this step's objective, so as not to hold its graph
        self.__dict__["_inner"] = (losses, inner)
        step = self.method.diagnostics  # this step's; read lazily, as it reads its own
        self.record(
            **{f"inner_{key}": functools.partial(step.__getitem__, key) for key in step},
            losses=losses,
            indicators=inner.detach(),
            weights=weights,
            **assignment.diagnostics(),
        )
        return weights

    def objective(self, losses: Tensor, weights: Tensor) -> Tensor:
        inner = self.__dict__.pop("_inner", None)
        if inner is None:
            raise RuntimeError("Grouped.objective needs this step's weigh() first: call the weighting on the losses")
        return super().objective(losses, weights) + self.method.objective(*inner)

    @property
    def loss_sign_reason(self) -> str:
        return f"{type(self.method).__name__}, whose weights are the group indicators: {self.method.loss_sign_reason}"

    def after_step(self, closure=None) -> None:
        self.method.after_step(closure)

    def end_epoch(self) -> None:
        self.method.end_epoch()

    def extra_repr(self) -> str:
        return f"num_tasks={self.num_tasks}"
