from __future__ import annotations

import math
import sys

import pytest
import torch
from helpers.weighting import aggregate, check_permutation_equivariance, check_scaling, random_jacobian

from go4align.weighting import CAGrad
from go4align.weighting.cagrad import cagrad_dual

pytest.importorskip("scipy")


def unscaled_direction(method, jac):
    """CAGrad's d before the reference's M / (1 + c^2) factor."""
    _, direction = aggregate(method, jac)
    return direction * (1 + method.c**2) / jac.shape[0]


@pytest.mark.parametrize("solver", ["projected", "slsqp"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_direction_maximises_the_worst_improvement_in_the_ball(solver, seed):
    jac = random_jacobian(4, size=6, seed=seed)
    method = CAGrad(4, solver=solver)
    d = unscaled_direction(method, jac)
    g0 = jac.mean(0)
    radius = method.c * g0.norm()
    # on the boundary of the ball around the average gradient
    assert abs(float((d - g0).norm() - radius)) < 1e-6 * float(radius)
    worst = (jac @ d).min()
    generator = torch.Generator().manual_seed(seed)
    directions = torch.randn(4000, 6, generator=generator, dtype=torch.float64)
    directions = directions / directions.norm(dim=1, keepdim=True)
    candidates = g0 + radius * directions * torch.rand(4000, 1, generator=generator, dtype=torch.float64) ** (1 / 6)
    tolerance = 1e-8 if solver == "projected" else 1e-3 * float(radius * g0.norm())
    assert float((candidates @ jac.T).min(1).values.max()) <= float(worst) + tolerance


@pytest.mark.parametrize("seed", [0, 3])
def test_projected_dual_satisfies_the_optimality_conditions(seed):
    jac = random_jacobian(5, size=8, seed=seed)
    gram = (jac @ jac.T).numpy()
    w, radius = cagrad_dual(gram, 0.4, "projected")
    grad = gram.mean(1) + radius * gram @ w / math.sqrt(w @ gram @ w + 1e-8)
    level = grad[w > 1e-9]
    assert level.max() - level.min() < 1e-7 * abs(grad).max()
    assert grad.min() >= level.min() - 1e-7 * abs(grad).max()


def test_slsqp_is_close_to_the_tight_solve():
    jac = random_jacobian(5, size=8, seed=4)
    tight, _ = aggregate(CAGrad(5, solver="projected"), jac)
    reference, _ = aggregate(CAGrad(5, solver="slsqp"), jac)
    torch.testing.assert_close(reference, tight, atol=5e-3, rtol=5e-3)


def test_zero_radius_is_the_summed_gradient():
    jac = random_jacobian(3, seed=1)
    weights, _ = aggregate(CAGrad(3, c=0.0), jac)
    torch.testing.assert_close(weights, torch.ones(3, dtype=torch.float64), atol=1e-6, rtol=0)


@pytest.mark.parametrize("rescale, factor", [(0, 1.0), (1, 1 + 0.4**2), (2, 1.4)])
def test_rescale_options(rescale, factor):
    jac = random_jacobian(3, seed=2)
    base, _ = aggregate(CAGrad(3, rescale=0, solver="projected"), jac)
    weights, _ = aggregate(CAGrad(3, rescale=rescale, solver="projected"), jac)
    torch.testing.assert_close(weights, base / factor)


def test_permutation_and_scaling():
    jac = random_jacobian(4, seed=6)
    check_permutation_equivariance(lambda: CAGrad(4, solver="projected"), jac, atol=1e-7, rtol=1e-7)
    check_scaling(lambda: CAGrad(4, solver="projected"), jac, power=0, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("option, value", [("c", -0.1), ("c", float("nan")), ("rescale", 3), ("solver", "cvxpy")])
def test_bad_options_are_named(option, value):
    with pytest.raises(ValueError, match=option):
        CAGrad(3, **{option: value})


def test_missing_scipy_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "scipy.optimize", None)
    with pytest.raises(ImportError, match=r"go4align\[cagrad\]"):
        CAGrad(3)
    CAGrad(3, solver="projected")
