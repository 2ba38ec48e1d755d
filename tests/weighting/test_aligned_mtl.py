from __future__ import annotations

import pytest
import torch
from helpers.weighting import aggregate, check_permutation_equivariance, check_scaling, random_jacobian

from go4align.weighting import AlignedMTL


@pytest.mark.parametrize("scale_mode", ["min", "median", "rmse"])
def test_aligned_gradients_have_equal_singular_values(scale_mode):
    jac = random_jacobian(4, size=10, seed=1)
    gram = jac @ jac.T
    values, vectors = torch.linalg.eigh(gram)
    sigma2 = {"min": values.min(), "median": values.median(), "rmse": values.mean()}[scale_mode]
    w_matrix = vectors @ torch.diag((sigma2 / values).sqrt()) @ vectors.T
    aligned = jac.T @ w_matrix
    torch.testing.assert_close(aligned.T @ aligned, sigma2 * torch.eye(4, dtype=torch.float64))
    weights, direction = aggregate(AlignedMTL(4, scale_mode=scale_mode), jac)
    torch.testing.assert_close(weights, w_matrix.sum(1))
    torch.testing.assert_close(direction, aligned.sum(1))


def test_orthogonal_gradients_are_scaled_to_the_smallest_norm():
    jac = torch.diag(torch.tensor([1.0, 2.0, 4.0], dtype=torch.float64))
    weights, direction = aggregate(AlignedMTL(3), jac)
    torch.testing.assert_close(weights, torch.tensor([1.0, 0.5, 0.25], dtype=torch.float64))
    torch.testing.assert_close(direction, torch.ones(3, dtype=torch.float64))


def test_rank_deficient_gradients_stay_finite():
    g = random_jacobian(2, size=5)
    weights, _ = aggregate(AlignedMTL(3), torch.stack([g[0], g[1], g[0] + g[1]]))
    assert torch.isfinite(weights).all()
    weights, _ = aggregate(AlignedMTL(2), torch.zeros(2, 5, dtype=torch.float64))
    assert torch.isfinite(weights).all()


def test_permutation_and_scale_invariance():
    jac = random_jacobian(5, size=8, seed=2)
    check_permutation_equivariance(lambda: AlignedMTL(5), jac)
    check_scaling(lambda: AlignedMTL(5), jac, power=0)


def test_bad_scale_mode_is_named():
    with pytest.raises(ValueError, match="scale_mode"):
        AlignedMTL(3, scale_mode="max")
