from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers.weighting import (
    HardSharing,
    aggregate,
    check_permutation_equivariance,
    check_scaling,
    random_jacobian,
    train,
)

from go4align.weighting import MGDA, MGDAUB
from go4align.weighting.mgda import reference_min_norm


def closed_form_two(jac):
    g1, g2 = jac
    c = ((g2 @ g2 - g1 @ g2) / ((g1 - g2) @ (g1 - g2))).clamp(0, 1)
    return torch.stack([c, 1 - c])


@pytest.mark.parametrize("solver", ["reference", "exact"])
def test_two_tasks_match_the_closed_form_inside_the_segment(solver):
    jac = torch.tensor([[1.0, 0.0, 0.5], [-0.5, 1.0, 0.0]], dtype=torch.float64)
    weights, _ = aggregate(MGDA(2, solver=solver), jac)
    torch.testing.assert_close(weights, 2 * closed_form_two(jac))


def test_two_tasks_at_a_vertex_exact_is_one_hot_and_reference_keeps_its_clamp():
    jac = torch.tensor([[1.0, 0.0], [3.0, 1.0]], dtype=torch.float64)  # g1 . g2 >= |g1|^2
    exact, _ = aggregate(MGDA(2, solver="exact"), jac)
    torch.testing.assert_close(exact, torch.tensor([2.0, 0.0], dtype=torch.float64))
    reference, _ = aggregate(MGDA(2, solver="reference"), jac)
    torch.testing.assert_close(reference, torch.tensor([2 * 0.999, 2 * 0.001], dtype=torch.float64))


def kkt_gap(gram, w):
    """Min-norm optimality on the simplex: (G w)_i >= w^T G w, with equality where w_i > 0."""
    g_w = gram @ w
    value = w @ g_w
    return max(float((value - g_w).max()), float((g_w[w > 1e-9] - value).abs().max()))


@pytest.mark.parametrize("seed", range(4))
def test_exact_solver_satisfies_the_optimality_conditions(seed):
    jac = random_jacobian(5, size=8, seed=seed)
    weights, _ = aggregate(MGDA(5, solver="exact"), jac)
    simplex = weights / 5
    gram = jac @ jac.T
    assert abs(float(simplex.sum()) - 1) < 1e-12 and (simplex >= 0).all()
    assert kkt_gap(gram, simplex) < 1e-8 * float(gram.abs().max())


@pytest.mark.parametrize("seed", range(4))
def test_reference_solver_is_feasible_and_never_below_the_exact_minimum(seed):
    jac = random_jacobian(5, size=8, seed=seed)
    gram = (jac @ jac.T).numpy()
    ref = reference_min_norm(gram)
    exact, _ = aggregate(MGDA(5, solver="exact"), jac)
    exact = exact.numpy() / 5
    assert abs(ref.sum() - 1) < 1e-9 and (ref >= -1e-12).all()
    assert ref @ gram @ ref >= exact @ gram @ exact - 1e-12


def test_reference_solver_pinned_value():
    """Sener's solver stops early on this input (squared norm 26% above the minimum); the value
    was checked against a literal transcription of the reference code."""
    jac = random_jacobian(5, size=8, seed=1)
    ref = reference_min_norm((jac @ jac.T).numpy())
    expected = [
        7.2527290095128150e-02,
        1.4295351519532589e-08,
        1.0011553572353336e-01,
        7.8521852575807427e-01,
        4.2138634127912689e-02,
    ]
    np.testing.assert_allclose(ref, expected, rtol=1e-9, atol=1e-12)


def test_iteration_cap_is_honoured():
    gram = (random_jacobian(6, size=9).numpy()) @ random_jacobian(6, size=9).numpy().T
    gram = gram @ gram.T
    one = reference_min_norm(gram, max_iter=1)
    assert abs(one.sum() - 1) < 1e-9


@pytest.mark.parametrize("normalisation", ["none", "loss", "norm", "loss+"])
def test_every_normalisation_trains(normalisation):
    train(MGDA(3, normalisation=normalisation), HardSharing(3), steps=2)


def test_norm_normalisation_solves_on_unit_gradients():
    jac = random_jacobian(4, seed=3)
    norms = jac.norm(dim=1, keepdim=True)
    weights, _ = aggregate(MGDA(4, normalisation="norm", solver="exact"), jac)
    unit, _ = aggregate(MGDA(4, solver="exact"), jac / norms)
    torch.testing.assert_close(weights, unit)


def test_loss_normalisation_is_invariant_to_scaling_a_task():
    jac = random_jacobian(3, seed=2)
    losses = torch.tensor([0.5, 2.0, 1.0], dtype=torch.float64)
    method = MGDA(3, normalisation="loss", solver="exact")
    scale = torch.tensor([1.0, 10.0, 1.0], dtype=torch.float64)
    a = method.aggregate(jac, losses, []).weights
    b = method.aggregate(jac * scale[:, None], losses * scale, []).weights
    torch.testing.assert_close(a, b)


def test_permutation_and_scale_invariance():
    check_permutation_equivariance(
        lambda: MGDA(5, solver="exact"), random_jacobian(5, size=8, seed=7), atol=1e-7, rtol=1e-6
    )
    check_scaling(lambda: MGDA(5, solver="exact"), random_jacobian(5, size=8, seed=7), power=0, atol=1e-7, rtol=1e-6)
    # the reference solver stops on a 1e-5 weight change, so only up to that
    check_scaling(lambda: MGDA(5), random_jacobian(5, size=8, seed=7), power=0, atol=1e-4, rtol=1e-4)


def test_mgda_ub_uses_the_representation():
    assert MGDAUB(3).target == "representation"
    model = HardSharing(3)
    a = train(MGDAUB(3), HardSharing(3), steps=2)
    b = train(MGDA(3, target="representation"), model, steps=2)
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y)


def test_single_task_gets_weight_one():
    weights, _ = aggregate(MGDA(1), random_jacobian(1))
    torch.testing.assert_close(weights, torch.ones(1, dtype=torch.float64))


@pytest.mark.parametrize(
    "option, value", [("normalisation", "l2"), ("solver", "fw"), ("max_iter", 0), ("max_iter", 2.5), ("target", "rep")]
)
def test_bad_options_are_named(option, value):
    with pytest.raises(ValueError, match=option):
        MGDA(3, **{option: value})


def test_repr():
    assert repr(MGDA(3, normalisation="loss", solver="exact")) == (
        "MGDA(num_tasks=3, target='parameters', head_gradients='weighted', jacobian='auto', max_norm=0.0, "
        "normalisation='loss', solver='exact', max_iter=250)"
    )


def test_numpy_types_do_not_leak():
    weights, _ = aggregate(MGDA(3), random_jacobian(3))
    assert isinstance(weights, torch.Tensor) and weights.dtype == torch.float64
    assert not isinstance(reference_min_norm(np.eye(2)), torch.Tensor)
