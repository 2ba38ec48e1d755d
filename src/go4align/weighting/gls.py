"""Geometric loss strategy: the geometric mean of the losses."""

from __future__ import annotations

import torch
from torch import Tensor

from .base import LossWeighting

__all__ = ["GLS"]


class GLS(LossWeighting):
    r"""Geometric loss strategy (Chennupati et al., CVPR-W 2019, arXiv 1904.08492):
    :math:`(\prod_m L_m)^{1/M}`, computed as :math:`\exp(\frac1M \sum_m \log L_m)`.

    Its gradient is :math:`\sum_m \frac{\bar L}{M L_m} \nabla L_m` with :math:`\bar L` the geometric
    mean, so those are the effective (returned) weights. Losses must be positive.

    Args:
        num_tasks: ``M``.
        validate: check the loss values each step.
    """

    positive_losses = True

    def weigh(self, losses: Tensor) -> Tensor:
        risk = losses.to(torch.float64)  # float32's range is too narrow for losses far apart
        mean = torch.log(risk).mean().exp()
        weights = mean / (self.num_tasks * risk)
        self.record(losses=losses, weights=weights)
        return weights

    def objective(self, losses: Tensor, weights: Tensor) -> Tensor:
        return torch.log(losses).mean().exp()
