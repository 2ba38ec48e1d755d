"""Uncertainty weighting (Kendall et al., CVPR 2018, arXiv 1705.07115)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ._checks import check_number
from .base import LossWeighting

__all__ = ["UW"]

#: The largest ``|init|``: the weights ``0.5 e^{-s}`` are normal float32 numbers for ``|s| < 86``
#: (beyond, they overflow, or become subnormal and then exactly 0: a model without gradients);
#: 80 leaves room for ``s`` to move.
MAX_INIT = 80.0


class UW(LossWeighting):
    r"""Homoscedastic-uncertainty weighting with trainable log-variances :math:`s`:

    .. math:: \sum_m \tfrac12 \left( e^{-s_m} L_m + s_m \right).

    The effective weights of the task losses are :math:`\tfrac12 e^{-s_m}` (returned; they carry
    the graph to :math:`s`, the diagnostics hold them detached, with ``precision`` =
    :math:`e^{-s}`, which is what the reference reports as its "weights").
    :math:`s` is an ``nn.Parameter`` of this module: give ``weighting.parameters()`` to an
    optimiser, in their own parameter group at ``lr``, as the reference does (its Adam group at
    ``--method-params-lr`` 0.025, whatever the model's lr); go4align's trainer does this
    (:func:`go4align.train.param_groups`). The reference's CelebA trainer gives its optimiser the
    model's parameters only, so there :math:`s` stays at ``init`` and UW is LS with the losses
    halved; the CelebA benchmark reproduces that by default (``docs/benchmarks.md``).
    Paper: https://arxiv.org/abs/1705.07115.

    Args:
        num_tasks: ``M``.
        init: initial :math:`s`, in ``[-80, 80]``. ``0`` (the reference, Nash-MTL/FAMO code) or
            ``-0.5`` (LibMTL, whose :math:`L / (2 e^s) + s / 2` is the same objective).
        lr: learning rate of :math:`s` (the reference's 0.025), used by the trainer's parameter
            group for it; a training loop of one's own should do the same.
        validate: check the loss values each step.
    """

    def __init__(self, num_tasks: int, *, init: float = 0.0, lr: float = 0.025, validate: bool = True):
        super().__init__(num_tasks, validate=validate)
        self.init = check_number("init", init, low=-MAX_INIT, high=MAX_INIT)
        self.lr = check_number("lr", lr, low=0.0, low_open=True)
        self.log_variance = nn.Parameter(torch.full((self.num_tasks,), self.init))

    def weigh(self, losses: Tensor) -> Tensor:
        weights = 0.5 * torch.exp(-self.log_variance)
        s = self.log_variance.detach()
        self.record(losses=losses, weights=weights.detach(), log_variance=s.clone(), precision=torch.exp(-s))
        return weights

    def objective(self, losses: Tensor, weights: Tensor) -> Tensor:
        return (weights.to(losses.dtype) * losses).sum() + 0.5 * self.log_variance.sum().to(losses.dtype)

    def extra_repr(self) -> str:
        return f"num_tasks={self.num_tasks}, init={self.init}, lr={self.lr}"
