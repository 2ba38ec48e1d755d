"""Scale-invariant loss: the sum of the log losses."""

from __future__ import annotations

import torch
from torch import Tensor

from .base import LossWeighting, check_choice

__all__ = ["SI"]


class SI(LossWeighting):
    r"""Scale-invariant scalarisation: :math:`\sum_m \log L_m`, invariant to rescaling any task.

    Its gradient is :math:`\sum_m \nabla L_m / L_m`, so the effective (returned) weights are
    :math:`1 / L_m`. Used as a baseline by Navon et al., Nash-MTL, https://arxiv.org/abs/2202.01017.

    Args:
        num_tasks: ``M``.
        variant: ``"log"`` (the reference code, losses must be positive) or ``"log1p"``
            (SamsungLabs' code: :math:`\sum_m \log(1 + L_m)`, weights :math:`1 / (1 + L_m)`,
            losses must be nonnegative). Other losses raise a ``ValueError`` naming the step
            and the tasks, as does a weight beyond the losses' dtype (``1 / L`` of a float32
            loss below ~3e-39).
        validate: check the loss values each step.
    """

    def __init__(self, num_tasks: int, *, variant: str = "log", validate: bool = True):
        super().__init__(num_tasks, validate=validate)
        check_choice("variant", variant, ("log", "log1p"))
        self.variant = variant
        # log L needs L > 0; log(1 + L) is refused below 0 too: at L = -1 it is -inf, and a
        # weight 1 / (1 + L) that grows as the loss falls below 0 would chase it there
        self.positive_losses = variant == "log"
        self.nonnegative_losses = variant == "log1p"

    def weigh(self, losses: Tensor) -> Tensor:
        risk = losses.to(torch.float64)  # 1 / L of a tiny float32 loss fits float64
        weights = 1 / risk if self.variant == "log" else 1 / (1 + risk)
        self.record(losses=losses, weights=weights)
        return weights

    def objective(self, losses: Tensor, weights: Tensor) -> Tensor:
        return (torch.log(losses) if self.variant == "log" else torch.log1p(losses)).sum()

    def extra_repr(self) -> str:
        return f"num_tasks={self.num_tasks}, variant={self.variant!r}"
