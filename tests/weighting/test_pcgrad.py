from __future__ import annotations

import pytest
import torch
from helpers.weighting import (
    HardSharing,
    aggregate,
    assert_close_lists,
    check_scaling,
    expected_gradients,
    one_step,
    random_jacobian,
    task_jacobian,
)

from go4align.weighting import PCGrad


def project(g, onto):
    return g - (g @ onto) / (onto @ onto) * onto


def test_two_conflicting_gradients_by_hand():
    g1 = torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64)
    g2 = torch.tensor([-1.0, 1.0, 0.0], dtype=torch.float64)
    _, direction = aggregate(PCGrad(2), torch.stack([g1, g2]))
    torch.testing.assert_close(direction, project(g1, g2) + project(g2, g1))


def test_agreeing_gradients_are_summed():
    jac = random_jacobian(3, conflict=False)
    weights, direction = aggregate(PCGrad(3), jac)
    torch.testing.assert_close(weights, torch.ones(3, dtype=torch.float64))
    torch.testing.assert_close(direction, jac.sum(0))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_three_tasks_match_vector_projections_in_the_same_random_order(seed):
    jac = random_jacobian(3, size=4, seed=seed)
    generator = torch.Generator().manual_seed(seed)
    projected = []
    for i in range(3):
        g = jac[i].clone()
        for j in torch.randperm(3, generator=generator).tolist():
            if g @ jac[j] < 0:
                g = project(g, jac[j])
        projected.append(g)
    weights, direction = aggregate(PCGrad(3, seed=seed), jac)
    torch.testing.assert_close(direction, sum(projected))


def test_mean_reduction_divides_by_the_number_of_tasks():
    jac = random_jacobian(4, seed=5)
    total, _ = aggregate(PCGrad(4, seed=3), jac)
    mean, _ = aggregate(PCGrad(4, seed=3, reduction="mean"), jac)
    torch.testing.assert_close(mean, total / 4)


def test_weights_are_scale_invariant():
    check_scaling(lambda: PCGrad(5), random_jacobian(5, seed=4), power=0)


def test_heads_get_the_plain_summed_gradient():
    model = HardSharing(3)
    method = PCGrad(3)
    state = method.generator.get_state()
    _, jac = task_jacobian(model)
    weights, grads = one_step(method, model)
    replay = PCGrad(3)
    replay.generator.set_state(state)
    expected_weights, _ = aggregate(replay, jac)
    torch.testing.assert_close(weights, expected_weights)
    assert_close_lists(grads, expected_gradients(model, expected_weights @ jac, torch.ones(3, dtype=torch.float64)))


def test_order_depends_on_the_seed_only():
    jac = random_jacobian(6, seed=11)
    a, _ = aggregate(PCGrad(6, seed=1), jac)
    b, _ = aggregate(PCGrad(6, seed=1), jac)
    torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("option, value", [("reduction", "max"), ("seed", 1.5), ("seed", None), ("head_gradients", 1)])
def test_bad_options_are_named(option, value):
    with pytest.raises(ValueError, match=option):
        PCGrad(3, **{option: value})
