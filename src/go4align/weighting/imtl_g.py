"""IMTL-G, the gradient half of impartial multi-task learning (Liu et al., ICLR 2021)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from torch import Tensor

from .gradient import Aggregation, GradientWeighting, gramian

__all__ = ["IMTLG", "imtl_g_weights"]


class IMTLG(GradientWeighting):
    r"""Weights whose aggregated gradient has equal projections on every unit task gradient.

    With :math:`u_m = g_m / \|g_m\|`, find :math:`\alpha` with :math:`\sum_m \alpha_m = 1` and
    :math:`g \cdot u_1 = g \cdot u_m` for all ``m``, :math:`g = \sum_m \alpha_m g_m`. In closed
    form, with :math:`D = [g_1 - g_m]_{m \ge 2}` and :math:`U = [u_1 - u_m]_{m \ge 2}`:
    :math:`\alpha_{2:M} = g_1 U^\top (D U^\top)^{-1}`, :math:`\alpha_1 = 1 - \sum_{m \ge 2}
    \alpha_m`. All products are read off the Gramian, so the solve costs ``O(M^3)`` after it.
    The weighted loss :math:`\sum_m \alpha_m L_m` reaches the heads too (reference).
    Paper: https://openreview.net/forum?id=IMPnRXEWpvr.

    A singular :math:`D U^\top` (linearly dependent gradients) gets the least-norm solution.

    Degenerate shared gradients: a task whose shared gradient is zero (its loss does not depend on
    the shared parameters, or is exactly solved) has no direction to project on. The reference
    divides by its zero norm; with its ``u = 0`` the conditions above force :math:`g = 0`
    (that task weighted 1, the others 0): a silent zero gradient for every shared parameter.
    Here such tasks are left out of the system, which is solved for the others (their weights
    sum to one), and each gets the weight ``1 / M``, which reaches only its own parameters;
    a ``RuntimeWarning`` says so and ``diagnostics["degenerate"]`` flags those tasks (1.0). When
    every task is degenerate, all weights are ``1 / M`` and the shared gradient is zero.

    Args:
        num_tasks: ``M``.
        target: ``"parameters"`` (the reference code) or ``"representation"`` (the feature-level
            gradients the Nash-MTL paper describes for IMTL-G).
        head_gradients, jacobian, max_norm, validate: see
            :class:`~go4align.weighting.gradient.GradientWeighting`.
    """

    def aggregate(self, jacobian: Tensor, losses: Tensor, targets: Sequence[Tensor]) -> Aggregation:
        weights, norms, degenerate = imtl_g_weights(gramian(jacobian))
        if bool(degenerate.any()):
            warnings.warn(
                f"IMTLG: task(s) {degenerate.nonzero().flatten().tolist()} have a zero shared gradient at step "
                f"{self.step}; they are left out of IMTL-G's projections and weighted 1/M on their own parameters",
                RuntimeWarning,
                stacklevel=4,
            )
        return Aggregation(weights, None, {"gradient_norms": norms, "degenerate": degenerate.double()})


def imtl_g_weights(gram: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """IMTL-G's weights from the float64 Gramian, with the gradient norms and the (boolean)
    degenerate tasks, those with a zero gradient, weighted ``1 / M`` (see :class:`IMTLG`)."""
    norms = gram.diagonal().clamp_min(0).sqrt()
    degenerate = norms == 0
    if not bool(degenerate.any()):
        return solve(gram, norms), norms, degenerate
    weights = torch.full_like(norms, 1 / gram.shape[0])
    rest = ~degenerate
    if bool(rest.any()):
        weights[rest] = solve(gram[rest][:, rest], norms[rest])
    return weights, norms, degenerate


def solve(gram: Tensor, norms: Tensor) -> Tensor:
    """IMTL-G's weights for the Gramian of gradients with positive ``norms``."""
    if gram.shape[0] == 1:
        return torch.ones_like(norms)
    # k[a, b] = g_a . u_b
    k = gram / norms[None, :]
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
    return torch.cat([(1 - rest.sum()).reshape(1), rest])
