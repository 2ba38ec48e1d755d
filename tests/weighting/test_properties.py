"""Property-based checks (hypothesis) shared by the methods: permutation behaviour, scaling
behaviour and finiteness, on loss vectors and Jacobians drawn at random."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers.weighting import aggregate
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from go4align.weighting import GLS, IMTLG, LS, MGDA, SI, UW, AlignedMTL, CAGrad, PCGrad, make
from go4align.weighting._simplex import project_simplex

SETTINGS = settings(max_examples=15, deadline=None)
FEW = settings(max_examples=8, deadline=None)
positive = st.floats(min_value=1e-3, max_value=1e3, allow_nan=False)


@st.composite
def losses_and_permutation(draw):
    m = draw(st.integers(2, 8))
    losses = draw(arrays(np.float64, m, elements=positive))
    return torch.tensor(losses), torch.tensor(draw(st.permutations(range(m))))


@st.composite
def jacobians(draw, min_tasks=2, max_tasks=6):
    m = draw(st.integers(min_tasks, max_tasks))
    p = draw(st.integers(m, 10))
    jac = draw(arrays(np.float64, (m, p), elements=st.floats(-10, 10, allow_nan=False)))
    jac = torch.tensor(jac)
    # well-conditioned enough that the closed forms are meaningful
    if torch.linalg.svdvals(jac).min() < 1e-2 * max(1.0, float(jac.abs().max())):
        jac = jac + torch.eye(m, p, dtype=torch.float64)
    return jac


@SETTINGS
@given(losses_and_permutation())
@pytest.mark.parametrize("factory", [LS, SI, GLS, UW, lambda m: make("famo", m), lambda m: make("dwa", m)])
def test_loss_methods_are_permutation_equivariant_and_finite(factory, case):
    losses, perm = case
    m = losses.shape[0]
    a, b = factory(m), factory(m)
    a(losses)
    b(losses[perm])
    wa, wb = a.diagnostics["weights"], b.diagnostics["weights"]
    assert torch.isfinite(wa).all()
    torch.testing.assert_close(wb, wa[perm])


@SETTINGS
@given(losses_and_permutation(), st.floats(1e-2, 1e2))
def test_scaling_all_losses(case, scale):
    """SI's weights scale as 1 / L (its update does not move); GLS's are scale-free."""
    losses, _ = case
    for cls, power in ((SI, -1), (GLS, 0)):
        a, b = cls(losses.shape[0]), cls(losses.shape[0])
        a(losses)
        b(losses * scale)
        torch.testing.assert_close(b.diagnostics["weights"], a.diagnostics["weights"] * scale**power)


GRADIENT_FACTORIES = [
    lambda m: MGDA(m, solver="exact"),
    lambda m: IMTLG(m),
    lambda m: AlignedMTL(m),
    lambda m: CAGrad(m, solver="projected"),
]


@FEW
@given(jacobians(), st.randoms(use_true_random=False))
@pytest.mark.parametrize("factory", GRADIENT_FACTORIES)
def test_gradient_methods_are_permutation_equivariant_and_scale_invariant(factory, jac, rng):
    m = jac.shape[0]
    perm = torch.tensor(rng.sample(range(m), m))
    weights, direction = aggregate(factory(m), jac)
    assert torch.isfinite(weights).all() and torch.isfinite(direction).all()
    permuted, permuted_direction = aggregate(factory(m), jac[perm])
    scale = float(direction.norm()) + 1.0
    torch.testing.assert_close(permuted_direction, direction, atol=1e-5 * scale, rtol=1e-5)
    scaled, _ = aggregate(factory(m), jac * 7.0)
    torch.testing.assert_close(scaled, weights, atol=1e-5 * (float(weights.abs().max()) + 1), rtol=1e-5)


@SETTINGS
@given(jacobians(max_tasks=5))
def test_pcgrad_projected_gradients_never_conflict_for_two_tasks(jac):
    jac = jac[:2]
    weights, _ = aggregate(PCGrad(2), jac)
    gram = jac @ jac.T
    if gram[0, 1] < 0:  # each projected gradient is orthogonal to the other task's gradient
        g1 = jac[0] - gram[0, 1] / gram[1, 1] * jac[1]
        g2 = jac[1] - gram[0, 1] / gram[0, 0] * jac[0]
        torch.testing.assert_close(weights @ jac, g1 + g2)
    else:
        torch.testing.assert_close(weights, torch.ones(2, dtype=torch.float64))


@SETTINGS
@given(arrays(np.float64, st.integers(1, 12), elements=st.floats(-1e3, 1e3, allow_nan=False)))
def test_simplex_projection_is_feasible_and_idempotent(y):
    w = project_simplex(y)
    assert abs(w.sum() - 1) < 1e-9 and (w >= 0).all()
    np.testing.assert_allclose(project_simplex(w), w, atol=1e-12)
