"""IMTL-G, the gradient half of impartial multi-task learning (Liu et al., ICLR 2021)."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from .gradient import Aggregation, GradientWeighting, gramian

__all__ = ["IMTLG"]


class IMTLG(GradientWeighting):
    r"""Weights whose aggregated gradient has equal projections on every unit task gradient.

    With :math:`u_m = g_m / \|g_m\|`, find :math:`\alpha` with :math:`\sum_m \alpha_m = 1` and
    :math:`g \cdot u_1 = g \cdot u_m` for all ``m``, :math:`g = \sum_m \alpha_m g_m`. In closed
    form, with :math:`D = [g_1 - g_m]_{m \ge 2}` and :math:`U = [u_1 - u_m]_{m \ge 2}`:
    :math:`\alpha_{2:M} = g_1 U^\top (D U^\top)^{-1}`, :math:`\alpha_1 = 1 - \sum_{m \ge 2}
    \alpha_m`. All products are read off the Gramian, so the solve costs ``O(M^3)`` after it.
    The weighted loss :math:`\sum_m \alpha_m L_m` reaches the heads too (reference).
    Paper: https://openreview.net/forum?id=IMPnRXEWpvr.

    As the reference, a singular :math:`D U^\top` is regularised with ``1e-8 I``; a zero task
    gradient, which makes the reference divide by zero, gets unit norm instead, so its ``u`` is zero.

    Args:
        num_tasks: ``M``.
        target: ``"parameters"`` (the reference code) or ``"representation"`` (the feature-level
            gradients the Nash-MTL paper describes for IMTL-G).
        head_gradients, batched, validate: see
            :class:`~go4align.weighting.gradient.GradientWeighting`.
    """

    def aggregate(self, jacobian: Tensor, losses: Tensor, targets: Sequence[Tensor]) -> Aggregation:
        gram = gramian(jacobian)
        norms = gram.diagonal().clamp_min(0).sqrt()
        if self.num_tasks == 1:
            return Aggregation(torch.ones_like(norms), None, {"gradient_norms": norms})
        # k[a, b] = g_a . u_b
        k = gram / torch.where(norms > 0, norms, torch.ones_like(norms))[None, :]
        first = k[0, 0] - k[0, 1:]
        system = k[0, 0] - k[0, 1:][None, :] - k[1:, 0][:, None] + k[1:, 1:]
        try:
            rest = torch.linalg.solve(system.T, first)
        except torch.linalg.LinAlgError:
            rest = None
        if rest is None or not bool(torch.isfinite(rest).all()):
            # Linearly dependent gradients (identical ones, more tasks than dimensions): the
            # least-norm solution. An absolute ridge (1e-8 * I) vanished next to the entries of
            # large gradients and failed again, or divided by ~0 into inf and NaN weights.
            rest = torch.linalg.pinv(system.T, rtol=1e-8) @ first
        weights = torch.cat([(1 - rest.sum()).reshape(1), rest])
        return Aggregation(weights, None, {"gradient_norms": norms})
