from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

pytest.importorskip("cvxpy")

from helpers.weighting import (  # noqa: E402
    HardSharing,
    aggregate,
    check_permutation_equivariance,
    check_scaling,
    gradients,
    random_jacobian,
)

from go4align.weighting import NashMTL  # noqa: E402
from go4align.weighting.nash_mtl import NashProblem, nash_mtl_weights  # noqa: E402


def test_orthogonal_gradients_get_inverse_norms():
    jac = torch.diag(torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64))
    weights, _ = aggregate(NashMTL(3, optim_niter=50), jac)
    torch.testing.assert_close(weights, torch.tensor([1.0, 0.5, 2.0], dtype=torch.float64), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("seed", [0, 1])
def test_solution_satisfies_the_bargaining_condition(seed):
    """G^T G alpha = 1 / alpha, i.e. alpha_i (G^T G alpha)_i = 1, for agreeing gradients."""
    jac = random_jacobian(4, size=9, seed=seed, conflict=False) / 4
    weights, _ = aggregate(NashMTL(4), jac)
    products = weights * ((jac @ jac.T) @ weights)
    torch.testing.assert_close(products, torch.ones(4, dtype=torch.float64), atol=2e-3, rtol=2e-3)


def test_weights_scale_inversely_with_the_gradients():
    jac = random_jacobian(3, size=6, seed=2, conflict=False)
    check_scaling(lambda: NashMTL(3), jac, power=-1, atol=1e-3, rtol=1e-3)
    check_permutation_equivariance(lambda: NashMTL(3), jac, atol=1e-3, rtol=1e-3)


def test_weights_are_reused_between_updates():
    model = HardSharing(3)
    method = NashMTL(3, update_weights_every=2)
    seen = []
    for _ in range(3):
        model.zero_grad()
        losses, z = model()
        seen.append(method.backward(losses, shared_parameters=model.shared_parameters(), shared_representation=z))
        seen.append(method.diagnostics["updated"].item())
    assert seen[1] == 1 and seen[3] == 0 and seen[5] == 1
    torch.testing.assert_close(seen[0], seen[2])


def test_shared_gradient_is_clipped_and_earlier_gradients_kept():
    model = HardSharing(3)
    model.y.mul_(100)  # large losses: the shared gradient needs clipping
    losses, z = model()
    NashMTL(3, max_norm=0).backward(losses, shared_parameters=model.shared_parameters())
    unclipped = gradients(model)
    model.zero_grad()
    for p in model.parameters():
        p.grad = torch.full_like(p, 0.5)
    losses, z = model()
    method = NashMTL(3, max_norm=1.0)
    method.backward(losses, shared_parameters=model.shared_parameters())
    shared = len(model.shared_parameters())
    added = [g - 0.5 for g in gradients(model)]
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in added[:shared]]))
    assert float(method.diagnostics["shared_grad_norm"]) > 1
    torch.testing.assert_close(norm, torch.tensor(1.0, dtype=norm.dtype), atol=1e-5, rtol=1e-5)
    factor = 1.0 / float(method.diagnostics["shared_grad_norm"])
    for a, u in zip(added[:shared], unclipped[:shared]):
        torch.testing.assert_close(a, u * factor, atol=1e-6, rtol=1e-5)
    for a, u in zip(added[shared:], unclipped[shared:]):  # heads are not clipped
        torch.testing.assert_close(a, u)


def test_clipping_needs_the_shared_parameters():
    model = HardSharing(3)
    losses, z = model()
    with pytest.raises(ValueError, match="shared_parameters"):
        NashMTL(3, target="representation").backward(losses, shared_representation=z)


def test_solver_failure_keeps_the_previous_weights(monkeypatch):
    import cvxpy

    method = NashMTL(3)  # built (its first solve compiles the problem) before the solver fails

    def fail(*args, **kwargs):
        raise cvxpy.error.SolverError("test failure")

    monkeypatch.setattr(cvxpy.Problem, "solve", fail)
    weights, _ = aggregate(method, random_jacobian(3, conflict=False))
    torch.testing.assert_close(weights, torch.ones(3, dtype=torch.float64))


@pytest.mark.parametrize("optim_niter", [1, 20])
def test_solves_stop_at_the_cap_or_when_the_weights_stop_moving(optim_niter, monkeypatch):
    jac = random_jacobian(3, size=6, seed=2, conflict=False)
    problem = NashProblem(3, NashMTL(3).solver)
    solve, calls = problem.problem.solve, []
    monkeypatch.setattr(problem.problem, "solve", lambda *a, **k: (calls.append(1), solve(*a, **k))[1])
    alpha, failed = nash_mtl_weights((jac @ jac.T).numpy(), np.ones(3), problem, optim_niter=optim_niter)
    assert not failed and np.isfinite(alpha).all() and not np.allclose(alpha, 1)
    assert len(calls) == 1 if optim_niter == 1 else 2 <= len(calls) < 20


@pytest.mark.parametrize(
    "option, value",
    [("max_norm", -1.0), ("update_weights_every", 0), ("optim_niter", 0), ("solver", "NOT_A_SOLVER"), ("solver", 3)],
)
def test_bad_options_are_named(option, value):
    with pytest.raises(ValueError, match=option):
        NashMTL(3, **{option: value})


def test_missing_cvxpy_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "cvxpy", None)
    with pytest.raises(ImportError, match=r"go4align\[nashmtl\]"):
        NashMTL(3)
