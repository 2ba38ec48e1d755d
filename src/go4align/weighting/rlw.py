"""Random loss weighting (Lin et al., TMLR 2022, arXiv 2111.10603)."""

from __future__ import annotations

import torch
from torch import Tensor

from ._checks import check_seed
from .base import LossWeighting

__all__ = ["RLW"]


class RLW(LossWeighting):
    r"""Random weights every step: :math:`w = \mathrm{softmax}(\epsilon)`, :math:`\epsilon \sim
    \mathcal N(0, I_M)`, objective :math:`\sum_m w_m L_m`. Paper: https://arxiv.org/abs/2111.10603.

    The draws come from a seeded ``torch.Generator`` on the CPU in float32 (the reference draws
    float32 from torch's global generator), saved in ``state_dict`` so a resumed run draws the
    same sequence.

    Args:
        num_tasks: ``M``.
        seed: seed of the generator.
        validate: check the loss values each step.
    """

    def __init__(self, num_tasks: int, *, seed: int = 0, validate: bool = True):
        super().__init__(num_tasks, validate=validate)
        self.seed = check_seed(seed)
        self.generator = torch.Generator().manual_seed(seed)

    def weigh(self, losses: Tensor) -> Tensor:
        draws = torch.randn(self.num_tasks, generator=self.generator)
        weights = torch.softmax(draws, 0).to(losses.device)
        self.record(losses=losses, weights=weights)
        return weights

    def get_extra_state(self) -> dict:
        return {"generator": self.generator.get_state()}

    def set_extra_state(self, state: dict) -> None:
        self.generator.set_state(state["generator"])

    def extra_repr(self) -> str:
        return f"num_tasks={self.num_tasks}, seed={self.seed}"
