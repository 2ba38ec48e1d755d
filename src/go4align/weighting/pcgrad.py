"""PCGrad, projecting conflicting gradients (Yu et al., NeurIPS 2020, arXiv 2001.06782)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from ._checks import check_seed
from .base import check_choice
from .gradient import Aggregation, GradientWeighting, gramian

__all__ = ["PCGrad", "pcgrad_weights"]


class PCGrad(GradientWeighting):
    r"""Gradient surgery: remove from each task gradient its components that conflict with others.

    For each task ``i``, starting from :math:`g_i^{PC} = g_i`, and for every task ``j`` in a random
    order (``i`` itself included, as in the reference): if :math:`g_i^{PC} \cdot g_j < 0`, then
    :math:`g_i^{PC} \leftarrow g_i^{PC} - \frac{g_i^{PC} \cdot g_j}{\|g_j\|^2} g_j`. The shared
    direction is :math:`\sum_i g_i^{PC}` (or the mean). Projections are done on the
    coefficients of the task gradients using their Gramian, so the direction is
    :math:`w^\top J` and ``w`` (returned) are its exact effective weights.
    The task-specific parameters get the plain summed gradient (reference).
    Paper: https://arxiv.org/abs/2001.06782.

    The order is drawn from a seeded ``torch.Generator`` (saved in ``state_dict``) instead of
    Python's global ``random``; it matters only for ``M >= 3``. TorchJD's PCGrad skips ``j = i``,
    which changes nothing for ``M = 2`` and rarely anything beyond.

    Args:
        num_tasks: ``M``.
        reduction: ``"sum"`` (reference default) or ``"mean"`` of the projected gradients.
        seed: seed of the order generator.
        target, head_gradients, jacobian, max_norm, validate: see
            :class:`~go4align.weighting.gradient.GradientWeighting` (defaults: the reference's
            shared parameters and unweighted heads).
    """

    def __init__(
        self,
        num_tasks: int,
        *,
        reduction: str = "sum",
        seed: int = 0,
        target: str = "parameters",
        head_gradients: str = "unweighted",
        jacobian: str = "auto",
        max_norm: float = 0.0,
        validate: bool = True,
    ):
        super().__init__(
            num_tasks,
            target=target,
            head_gradients=head_gradients,
            jacobian=jacobian,
            max_norm=max_norm,
            validate=validate,
        )
        check_choice("reduction", reduction, ("sum", "mean"))
        self.reduction = reduction
        self.seed = check_seed(seed)
        self.generator = torch.Generator().manual_seed(seed)

    def aggregate(self, jacobian: Tensor, losses: Tensor, targets: Sequence[Tensor]) -> Aggregation:
        m = self.num_tasks
        orders = [torch.randperm(m, generator=self.generator).tolist() for _ in range(m)]
        weights, conflicts = pcgrad_weights(gramian(jacobian), orders, reduction=self.reduction)
        return Aggregation(weights, None, {"conflicts": conflicts})

    def get_extra_state(self) -> dict:
        return {"generator": self.generator.get_state()}

    def set_extra_state(self, state: dict) -> None:
        self.generator.set_state(state["generator"])

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, reduction={self.reduction!r}, seed={self.seed}"


def pcgrad_weights(gram: Tensor, orders: Sequence[Sequence[int]], *, reduction: str = "sum") -> tuple[Tensor, Tensor]:
    """PCGrad's effective weights from the float64 Gramian, with task ``i``'s gradient projected
    against the others in the order ``orders[i]``, and each task's number of conflicts. The
    projections act on coefficients over the task gradients, so only inner products (the
    Gramian) are needed: ``g_i^PC = c_i @ J`` and the direction is ``sum_i c_i @ J``."""
    m = gram.shape[0]
    products = gram.cpu().numpy()
    coefficients = np.eye(m)
    conflicts = np.zeros(m)
    for i in range(m):
        row = coefficients[i]
        for j in orders[i]:
            dot = row @ products[:, j]
            if dot < 0:
                row[j] -= dot / products[j, j]
                conflicts[i] += 1
    weights = coefficients.sum(0)
    if reduction == "mean":
        weights = weights / m
    return tuple(torch.as_tensor(a, dtype=torch.float64, device=gram.device) for a in (weights, conflicts))
