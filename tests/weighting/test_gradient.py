"""The gradient-oriented base: what is written into .grad, targets, batching, the weight hook."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers.weighting import HardSharing, assert_close_lists, expected_gradients, gradients, one_step, task_jacobian
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from go4align.weighting import MGDA, Aggregation, GradientWeighting, gradient


class FixedWeights(GradientWeighting):
    """A test method: fixed weights, so what the base writes can be predicted exactly."""

    def __init__(self, num_tasks, weights, **options):
        super().__init__(num_tasks, **options)
        self.fixed = torch.tensor(weights, dtype=torch.float64)

    def aggregate(self, jacobian, losses, targets):
        return Aggregation(self.fixed.clone())


class FixedDirection(GradientWeighting):
    """A test method returning a direction and no weights (like GradDrop)."""

    def aggregate(self, jacobian, losses, targets):
        return Aggregation(None, 2 * jacobian[0])


@pytest.mark.parametrize("stacked", [False, True])
@pytest.mark.parametrize("target", ["parameters", "representation"])
@pytest.mark.parametrize("heads", ["weighted", "unweighted"])
def test_backward_writes_the_direction_and_head_gradients(target, heads, stacked):
    model = HardSharing(3, stacked=stacked)
    weights = [0.5, 2.0, 0.25]
    _, jac = task_jacobian(model, target)
    w = torch.tensor(weights, dtype=torch.float64)
    returned, grads = one_step(FixedWeights(3, weights, target=target, head_gradients=heads), model)
    torch.testing.assert_close(returned, w)
    head_weights = w if heads == "weighted" else torch.ones(3, dtype=torch.float64)
    assert_close_lists(grads, expected_gradients(model, w @ jac, head_weights, target))


def test_direction_without_weights_gets_unweighted_heads_and_returns_none():
    model = HardSharing(3)
    _, jac = task_jacobian(model)
    returned, grads = one_step(FixedDirection(3), model)
    assert returned is None
    assert "weights" not in FixedDirection(3).diagnostics
    assert_close_lists(grads, expected_gradients(model, 2 * jac[0], torch.ones(3, dtype=torch.float64)))


def test_gradients_accumulate_like_autograd():
    model = HardSharing(3)
    _, fresh = one_step(FixedWeights(3, [1.0, 0.5, 2.0]), model)
    model.zero_grad()
    for p in model.parameters():
        p.grad = torch.full_like(p, 0.125)
    losses, z = model()
    FixedWeights(3, [1.0, 0.5, 2.0]).backward(
        losses, shared_parameters=model.shared_parameters(), shared_representation=z
    )
    assert_close_lists(gradients(model), [g + 0.125 for g in fresh])


@pytest.mark.parametrize("stacked", [False, True])
@pytest.mark.parametrize("target", ["parameters", "representation"])
def test_batched_and_looped_jacobians_agree(target, stacked):
    model = HardSharing(4, stacked=stacked)
    losses, z = model()
    targets = model.shared_parameters() if target == "parameters" else [z]
    looped = GradientWeighting(4, jacobian="loop").jacobian(losses, targets)
    batched = GradientWeighting(4, jacobian="batched").jacobian(losses, targets)
    torch.testing.assert_close(batched, looped)
    _, independent = task_jacobian(model, target)
    torch.testing.assert_close(looped.double(), independent)


class NoVmap(torch.autograd.Function):
    """An operation without a vmap rule: the batched Jacobian must fall back to the loop."""

    @staticmethod
    def forward(ctx, x):
        return x * 2

    @staticmethod
    def backward(ctx, grad):
        return grad * (2 if grad.abs().sum().item() >= 0 else 0)  # .item() cannot be vmapped


def test_batched_jacobian_falls_back_to_the_loop_when_vmap_cannot_batch(monkeypatch):
    tries = []
    batched = gradient.batched_task_gradients
    monkeypatch.setattr(gradient, "batched_task_gradients", lambda *a: (tries.append(1), batched(*a))[1])
    model = HardSharing(3)
    z = NoVmap.apply(model.trunk(model.x))
    losses = torch.stack([(head(z) ** 2).mean() for head in model.heads])
    method = GradientWeighting(3, jacobian="batched")
    jac = method.jacobian(losses, model.shared_parameters())
    method.jacobian(losses, model.shared_parameters())
    assert len(tries) == 1  # vmap failed once: the loop from then on, without trying again
    rows = [
        torch.cat([g.reshape(-1) for g in torch.autograd.grad(l, model.shared_parameters(), retain_graph=True)])
        for l in losses
    ]
    torch.testing.assert_close(jac, torch.stack(rows))


def test_missing_or_unusable_targets_are_named():
    model = HardSharing(3)
    losses, z = model()
    with pytest.raises(ValueError, match="shared_parameters"):
        MGDA(3).backward(losses, shared_representation=z)
    with pytest.raises(ValueError, match="shared_representation"):
        MGDA(3, target="representation").backward(losses, shared_parameters=model.shared_parameters())
    with pytest.raises(ValueError, match="shared_representation"):
        MGDA(3, target="representation").backward(losses, shared_representation=z.detach())
    with pytest.raises(ValueError, match="shared_parameters"):
        MGDA(3).backward(losses, shared_parameters=[torch.zeros(2)])


@pytest.mark.parametrize(
    "option, value",
    [("target", "weights"), ("head_gradients", "none"), ("jacobian", "vmap"), ("max_norm", -1.0), ("validate", "yes")],
)
def test_bad_base_options_are_named(option, value):
    with pytest.raises(ValueError, match=option):
        GradientWeighting(3, **{option: value})


def test_parameters_reached_by_several_tasks_get_the_weighted_sum():
    torch.manual_seed(0)
    trunk = torch.nn.Linear(3, 4)
    common, own = torch.nn.Linear(4, 1), torch.nn.Linear(4, 1)  # common serves both tasks
    x = torch.randn(5, 3)
    z = torch.tanh(trunk(x))
    losses = torch.stack([(common(z) ** 2).mean(), ((common(z) + own(z)) ** 2).mean()])
    weights = [0.3, 2.0]
    heads = [*common.parameters(), *own.parameters()]
    expected = torch.autograd.grad((torch.tensor(weights) * losses).sum(), heads, retain_graph=True)
    FixedWeights(2, weights).backward(losses, shared_parameters=list(trunk.parameters()))
    assert_close_lists([p.grad for p in heads], list(expected), check_dtype=False)


def test_reachable_leaves_lists_every_parameter_once():
    from go4align.weighting.gradient import reachable_leaves

    model = HardSharing(3)
    losses, _ = model()
    found = reachable_leaves(losses, exclude=model.shared_parameters())
    heads = [p for head in model.heads for p in head.parameters()]
    assert sorted(map(id, found)) == sorted(map(id, heads))


def test_stacked_losses_start_each_pass_at_the_task_loss():
    from torch.autograd.graph import GradientEdge

    from go4align.weighting.gradient import task_outputs

    stacked, _ = HardSharing(3, stacked=True)()
    assert all(isinstance(output, GradientEdge) for output in task_outputs(stacked))
    vector, _ = HardSharing(3)()
    assert all(isinstance(output, torch.Tensor) for output in task_outputs(vector))


@settings(max_examples=60, deadline=None)
@given(
    arrays(
        np.float32,
        st.tuples(st.integers(1, 4), st.integers(1, 6)),
        elements=st.floats(width=32) | st.sampled_from([np.inf, -np.inf, np.nan, -0.0, 3e38, -3e38]),
    )
)
def test_row_peaks_are_the_rows_largest_magnitudes(values):
    from go4align.weighting.gradient import row_peaks

    jacobian = torch.from_numpy(values)
    expected = torch.linalg.vector_norm(jacobian, ord=math.inf, dim=1)
    torch.testing.assert_close(row_peaks(jacobian), expected, equal_nan=True, rtol=0, atol=0)


def test_finite_gradients_whose_row_sums_overflow_pass_and_non_finite_ones_are_named():
    method = MGDA(3)
    large = torch.full((3, 4), 3e38)  # finite, but every row sum overflows float32
    assert method.finite(large, 1.0)
    broken = large.clone()
    broken[1, 2] = math.nan
    with pytest.raises(ValueError, match=r"task\(s\) \[1\]"):
        method.finite(broken, 1.0)
    assert not method.finite(broken, 2.0)  # under a scaler: an overflow, the step is skipped


def test_each_task_reaches_its_own_head_and_the_parameters_it_shares():
    from go4align.weighting.gradient import task_leaves, task_outputs

    model = HardSharing(3, stacked=True)
    z = model.trunk(model.x)
    extra = torch.nn.Parameter(torch.ones((), dtype=z.dtype, device=z.device))
    losses = [((head(z).squeeze(1) - model.y[:, m]) ** 2).mean() for m, head in enumerate(model.heads)]
    losses[0], losses[2] = losses[0] * extra, losses[2] + extra  # a parameter outside the trunk, two tasks
    found = task_leaves(task_outputs(torch.stack(losses)), exclude=model.shared_parameters())
    expected = [{*map(id, head.parameters())} for head in model.heads]
    expected[0].add(id(extra))
    expected[2].add(id(extra))
    assert [sorted(map(id, leaves)) for leaves in found] == [sorted(ids) for ids in expected]
    assert all(len(leaves) == len({*map(id, leaves)}) for leaves in found)


def test_task_leaves_walk_graphs_deeper_than_the_recursion_limit():
    from go4align.weighting.gradient import task_leaves

    weight = torch.nn.Parameter(torch.ones(()))
    value = weight
    for _ in range(5000):
        value = value * 1.0001
    assert [[id(t) for t in leaves] for leaves in task_leaves([value])] == [[id(weight)]]
