from __future__ import annotations

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

from go4align.weighting import IMTLG


@pytest.mark.parametrize("num_tasks, seed", [(2, 0), (3, 1), (5, 2), (5, 3)])
def test_equal_projections_on_every_unit_gradient(num_tasks, seed):
    jac = random_jacobian(num_tasks, size=9, seed=seed)
    weights, direction = aggregate(IMTLG(num_tasks), jac)
    projections = jac @ direction / jac.norm(dim=1)
    torch.testing.assert_close(projections, projections[0].expand(num_tasks))
    torch.testing.assert_close(weights.sum(), torch.tensor(1.0, dtype=torch.float64))


def test_two_tasks_by_hand():
    g1 = torch.tensor([3.0, 0.0], dtype=torch.float64)
    g2 = torch.tensor([0.0, 1.0], dtype=torch.float64)
    weights, direction = aggregate(IMTLG(2), torch.stack([g1, g2]))
    # orthogonal gradients: a1 * 3 = a2 * 1 and a1 + a2 = 1
    torch.testing.assert_close(weights, torch.tensor([0.25, 0.75], dtype=torch.float64))
    torch.testing.assert_close(direction, torch.tensor([0.75, 0.75], dtype=torch.float64))


def test_permutation_and_scale_invariance():
    jac = random_jacobian(4, size=6, seed=5)
    check_permutation_equivariance(lambda: IMTLG(4), jac)
    check_scaling(lambda: IMTLG(4), jac, power=0)


def test_degenerate_gradients_stay_finite():
    g = random_jacobian(2, size=5)
    duplicated = torch.stack([g[0], g[0], g[1]])  # a singular system
    weights, _ = aggregate(IMTLG(3), duplicated)
    assert torch.isfinite(weights).all()
    with_zero = torch.stack([g[0], torch.zeros(5, dtype=torch.float64), g[1]])
    with pytest.warns(RuntimeWarning, match="zero shared gradient"):
        weights, direction = aggregate(IMTLG(3), with_zero)
    assert torch.isfinite(weights).all()
    assert direction.abs().max() > 0  # the reference's answer here is a zero direction


def test_single_task():
    weights, _ = aggregate(IMTLG(1), random_jacobian(1))
    torch.testing.assert_close(weights, torch.ones(1, dtype=torch.float64))


def test_feature_level_variant_trains():
    weights = train(IMTLG(3, target="representation"), HardSharing(3), steps=2)
    assert all(torch.isfinite(w).all() for w in weights)


@pytest.mark.parametrize("option, value", [("target", "features"), ("head_gradients", "plain")])
def test_bad_options_are_named(option, value):
    with pytest.raises(ValueError, match=option):
        IMTLG(3, **{option: value})
