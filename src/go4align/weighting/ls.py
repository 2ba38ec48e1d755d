"""Linear scalarisation (LS): the plain sum of the task losses."""

from __future__ import annotations

import torch
from torch import Tensor

from .base import LossWeighting

__all__ = ["LS"]


class LS(LossWeighting):
    """Sum of the task losses, every weight 1 (LibMTL's EW)."""

    def weigh(self, losses: Tensor) -> Tensor:
        weights = torch.ones_like(losses)
        self.record(losses=losses, weights=weights)
        return weights
