from __future__ import annotations

import pytest
import torch
from helpers.weighting import HardSharing, gradients

from go4align.weighting import FAMO


def test_weights_and_objective_gradient_by_hand():
    method = FAMO(3)
    with torch.no_grad():
        method.logits.copy_(torch.tensor([0.2, -0.1, 0.0], dtype=torch.float64))
    losses = torch.tensor([0.5, 2.0, 4.0], dtype=torch.float64, requires_grad=True)
    method(losses).backward()
    z = torch.softmax(torch.tensor([0.2, -0.1, 0.0], dtype=torch.float64), 0)
    d = losses.detach() + 1e-8
    expected = z / (z / d).sum() / d
    torch.testing.assert_close(losses.grad, expected)
    torch.testing.assert_close(method.diagnostics["weights"], expected)
    torch.testing.assert_close(expected.sum(), torch.tensor(1.0, dtype=torch.float64))


def test_logit_update_is_one_adam_step_on_the_softmax_gradient():
    gamma, lr = 1e-3, 0.025
    method = FAMO(3, gamma=gamma, lr=lr)
    xi = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    adam = torch.optim.Adam([xi], lr=lr, weight_decay=gamma)
    sequence = [([1.0, 2.0, 3.0], [0.9, 1.5, 2.9]), ([0.9, 1.5, 2.9], [0.7, 1.4, 2.8])]
    for before, after in sequence:
        before, after = torch.tensor(before, dtype=torch.float64), torch.tensor(after, dtype=torch.float64)
        method(before)
        method.after_step(lambda: after)
        delta = torch.log(before + 1e-8) - torch.log(after + 1e-8)
        adam.zero_grad()
        xi.grad = torch.autograd.grad(torch.softmax(xi, 0), xi, delta)[0]
        adam.step()
        torch.testing.assert_close(method.logits, xi.detach())


def test_after_step_needs_a_closure_and_a_backward_first():
    method = FAMO(2)
    with pytest.raises(ValueError, match="closure"):
        method.after_step(None)
    with pytest.raises(ValueError, match="backward"):
        method.after_step(lambda: torch.ones(2))


def test_closure_runs_without_building_a_graph():
    model = HardSharing(2)
    method = FAMO(2)
    losses, _ = model()
    method.backward(losses)
    seen = []
    method.after_step(lambda: seen.append(torch.is_grad_enabled()) or model()[0])
    assert seen == [False]


def test_optional_clipping_of_the_shared_gradient():
    model = HardSharing(2)
    model.y.mul_(100)
    losses, _ = model()
    FAMO(2, max_norm=0.5).backward(losses, shared_parameters=model.shared_parameters())
    shared = gradients(model)[: len(model.shared_parameters())]
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in shared]))
    assert float(norm) == pytest.approx(0.5, rel=1e-5)
    with pytest.raises(ValueError, match="shared_parameters"):
        FAMO(2, max_norm=0.5).backward(model()[0])


@pytest.mark.parametrize("option, value", [("gamma", -1.0), ("lr", 0.0), ("eps", -1e-8), ("max_norm", float("nan"))])
def test_bad_options_are_named(option, value):
    with pytest.raises(ValueError, match=option):
        FAMO(3, **{option: value})


def test_grouped_famo_trains_through_the_protocol():
    """GO4Align's Table 4 groups FAMO's weights; the wrapper must pass after_step on."""
    from helpers.weighting import train

    from go4align.weighting import Grouped

    method = Grouped(FAMO(3), 2)
    train(method, HardSharing(3), steps=3)
    assert int(method.method.adam_steps) == 3
    assert method.diagnostics["weights"].unique().numel() <= 2
