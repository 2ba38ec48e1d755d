from __future__ import annotations

import re

import pytest
import torch

from go4align.weighting import UW


def test_objective_and_gradients_by_hand():
    method = UW(2)
    with torch.no_grad():
        method.log_variance.copy_(torch.tensor([0.5, -1.0]))
    s = method.log_variance.detach().double()
    losses = torch.tensor([2.0, 3.0], dtype=torch.float64, requires_grad=True)
    value = method(losses)
    torch.testing.assert_close(value, (0.5 * (torch.exp(-s) * losses.detach() + s)).sum())
    value.backward()
    torch.testing.assert_close(losses.grad, 0.5 * torch.exp(-s))
    torch.testing.assert_close(method.log_variance.grad.double(), 0.5 * (1 - torch.exp(-s) * losses.detach()))
    torch.testing.assert_close(method.diagnostics["precision"].double(), torch.exp(-s))
    assert not method.diagnostics["weights"].requires_grad


def test_log_variances_are_trainable_parameters():
    method = UW(3, init=-0.5)
    assert [p.shape for p in method.parameters()] == [torch.Size([3])]
    torch.testing.assert_close(method.log_variance.detach(), torch.full((3,), -0.5))
    optimiser = torch.optim.Adam(method.parameters(), lr=0.025)
    for _ in range(5):
        optimiser.zero_grad()
        method(torch.tensor([4.0, 1.0, 0.25])).backward()
        optimiser.step()
    s = method.log_variance.detach()
    assert s[0] > s[1] > s[2]  # the stationary point is s = log L


@pytest.mark.parametrize(
    "option, value", [("init", float("inf")), ("lr", 0.0), ("lr", -0.025), ("lr", "0.1"), ("lr", True)]
)
def test_bad_options_are_named(option, value):
    with pytest.raises(ValueError, match=option):
        UW(3, **{option: value})


@pytest.mark.parametrize("init", [1e300, -1e300, 10**30, 10**400, 81.0, -81.0, float("nan"), True, "0", None])
def test_an_init_whose_weights_float32_cannot_hold_is_named(init):
    """1e300 ended in torch's "value cannot be converted to type float"; 10**30 gave weights of
    exactly 0 (e^-1e30), so a model without gradients, silently."""
    with pytest.raises(
        ValueError, match=r"init must be a finite number in \[-80.0, 80.0\], got " + re.escape(repr(init))
    ):
        UW(3, init=init)


@pytest.mark.parametrize("init", [-80, 80.0])
def test_the_extreme_inits_give_finite_positive_weights(init):
    losses = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    weights = UW(3, init=init).backward(losses)
    assert torch.isfinite(weights).all() and (weights > 0).all()
    assert torch.isfinite(losses.grad).all() and (losses.grad > 0).all()


def test_the_learning_rate_is_the_reference_default_and_an_option():
    assert UW(3).lr == 0.025
    assert UW(3, lr=0.1).lr == 0.1 and "lr=0.1" in repr(UW(3, lr=0.1))


def test_grouped_uw_still_trains_the_log_variances():
    from helpers.weighting import HardSharing, train

    from go4align.weighting import Grouped

    method = Grouped(UW(3), 2)
    train(method, HardSharing(3), steps=2)
    assert not torch.equal(method.method.log_variance.detach(), torch.zeros(3))
