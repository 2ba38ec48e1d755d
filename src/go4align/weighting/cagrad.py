"""CAGrad, conflict-averse gradient descent (Liu et al., NeurIPS 2021, arXiv 2110.14048)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from ._checks import check_number
from ._simplex import minimise_on_simplex
from .base import check_choice
from .gradient import Aggregation, GradientWeighting, gramian

__all__ = ["CAGrad", "cagrad_weights", "cagrad_dual"]

SOLVERS = ("slsqp", "projected")


class CAGrad(GradientWeighting):
    r"""Maximise the worst task's local improvement within a ball around the average gradient.

    With :math:`g_0 = \frac1M \sum_m g_m`, CAGrad's update direction is
    :math:`d = \arg\max_{\|d - g_0\| \le c \|g_0\|} \min_m g_m \cdot d`. Its dual is solved over
    simplex weights: :math:`w = \arg\min_{w \in \Delta} g_w \cdot g_0 + \sqrt{\phi}\, \|g_w\|` with
    :math:`g_w = \sum_m w_m g_m`, :math:`\sqrt{\phi} = c \|g_0\|`, and then
    :math:`d = g_0 + \frac{\sqrt{\phi}}{\|g_w\|} g_w`. As the reference, the shared parameters
    receive :math:`M d / (1 + c^2)` (``rescale=1``) and the heads the plain summed gradient;
    ``d`` is a combination of the task gradients, and its effective weights are returned.
    The reference's small constants are kept (``1e-8`` inside the square roots and the division);
    the dual is solved on the float64 Gramian (the reference: float32).
    Paper: https://arxiv.org/abs/2110.14048.

    Args:
        num_tasks: ``M``.
        c: radius factor in ``[0, 1e6]`` (reference default 0.4; ``c = 0`` is plain averaging;
            the paper tries ``c <= 0.9``, and far larger radii only rescale the direction by
            ``1 / (1 + c^2)`` towards zero).
        rescale: ``0`` (``d``), ``1`` (``d / (1 + c^2)``, reference default) or ``2``
            (``d / (1 + c)``); the result is multiplied by ``M`` to match the summed loss.
        solver: ``"slsqp"`` (the reference: scipy's SLSQP at its default tolerance, found up to
            3e-4 off a tightly converged solve; given the analytic gradients of the objective and of
            the constraint here where the reference lets scipy difference both numerically,
            ``M + 1`` calls each per iteration; needs scipy, ``pip install 'go4align[cagrad]'``)
            or ``"projected"`` (accelerated projected gradient on the simplex to machine precision,
            no extra dependency; a few milliseconds per step for ``M <= 8`` in this project's
            tests, but up to a second on ill-conditioned Gramians, where SLSQP stays fast).
        target, head_gradients, jacobian, max_norm, validate: see
            :class:`~go4align.weighting.gradient.GradientWeighting` (defaults: the reference's
            shared parameters and unweighted heads).
    """

    def __init__(
        self,
        num_tasks: int,
        *,
        c: float = 0.4,
        rescale: int = 1,
        solver: str = "slsqp",
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
        self.c = check_number("c", c, low=0.0, high=1e6)
        check_choice("rescale", rescale, (0, 1, 2))
        check_choice("solver", solver, SOLVERS)
        self.rescale, self.solver = rescale, solver
        if solver == "slsqp":
            try:
                import scipy.optimize  # noqa: F401
            except ImportError as error:
                raise ImportError(
                    "CAGrad(solver='slsqp') needs scipy: pip install 'go4align[cagrad]' (or use solver='projected')"
                ) from error

    def aggregate(self, jacobian: Tensor, losses: Tensor, targets: Sequence[Tensor]) -> Aggregation:
        weights, dual = cagrad_weights(gramian(jacobian), c=self.c, rescale=self.rescale, solver=self.solver)
        return Aggregation(weights, None, {"dual_weights": dual})

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, c={self.c}, rescale={self.rescale}, solver={self.solver!r}"


def cagrad_weights(gram: Tensor, *, c: float = 0.4, rescale: int = 1, solver: str = "slsqp") -> tuple[Tensor, Tensor]:
    """CAGrad's effective task weights (the direction is ``weights @ J``) and its dual simplex
    weights, from the float64 Gramian; see :class:`CAGrad` for the options."""
    m = gram.shape[0]
    products = gram.cpu().numpy()
    dual, radius = cagrad_dual(products, c, solver)
    step = radius / (math.sqrt(max(dual @ products @ dual, 0.0)) + 1e-8)
    coefficients = np.full(m, 1.0 / m) + step * dual
    coefficients *= m / {0: 1.0, 1: 1.0 + c**2, 2: 1.0 + c}[rescale]
    return tuple(torch.as_tensor(a, dtype=torch.float64, device=gram.device) for a in (coefficients, dual))


def cagrad_dual(gram: np.ndarray, c: float, solver: str = "slsqp") -> tuple[np.ndarray, float]:
    """Simplex weights solving CAGrad's dual, and the radius :math:`\\sqrt{\\phi}` used."""
    m = gram.shape[0]
    radius = c * math.sqrt(gram.mean() + 1e-8) + 1e-8
    average = np.full(m, 1.0 / m)
    towards_average = gram @ average

    def value(w):
        return float(w @ towards_average + radius * math.sqrt(w @ gram @ w + 1e-8))

    def gradient(w):
        return towards_average + radius * (gram @ w) / math.sqrt(w @ gram @ w + 1e-8)

    if solver == "slsqp":
        from scipy.optimize import minimize

        result = minimize(
            value,
            average,
            jac=gradient,
            method="SLSQP",
            bounds=[(0.0, 1.0)] * m,
            # the constraint's Jacobian given too: scipy would difference it numerically with
            # M + 1 calls per iteration (same iterates to ~1e-10; 2-4x faster at M = 40)
            constraints={"type": "eq", "fun": lambda w: 1.0 - w.sum(), "jac": lambda w: -np.ones_like(w)},
        )
        return result.x, radius

    def optimal(w):
        """``w`` itself once the optimality conditions hold to 1e-8 (relative)."""
        g = gradient(w)
        level = g[w > 1e-12]
        slack = 1e-8 * np.abs(g).max()
        return w if level.max() - level.min() <= slack and g.min() >= level.min() - slack else None

    return minimise_on_simplex(value, gradient, average, tol=1e-10, finish=optimal), radius
