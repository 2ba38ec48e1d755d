from __future__ import annotations

import pytest
import torch

from go4align.weighting import GradDrop

from helpers import HardSharing, assert_close_lists, expected_gradients, one_step, task_jacobian


def run(method, jac, z):
    result = method.aggregate(jac, torch.ones(jac.shape[0], dtype=torch.float64), [z])
    assert result.weights is None
    return result.direction.view_as(z)


def by_hand(grads, z, draw, leak=0.0, activation_sign=True):
    signed = grads * z.sign() if activation_sign else grads
    s = signed.sum(1)
    purity = 0.5 * (1 + s.sum(0) / (s.abs().sum(0) + 1e-7))
    mask = ((purity > draw) & (s > 0)) | ((purity < draw) & (s < 0))
    return (grads * (leak + (1 - leak) * mask.to(grads.dtype)).unsqueeze(1)).sum(0)


@pytest.mark.parametrize("leak, activation_sign", [(0.0, True), (0.3, True), (0.0, False)])
def test_direction_by_hand_with_the_same_draws(leak, activation_sign):
    generator = torch.Generator().manual_seed(0)
    z = torch.randn(4, 6, generator=generator, dtype=torch.float64)
    grads = torch.randn(3, 4, 6, generator=generator, dtype=torch.float64)
    draw = torch.rand(6, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    method = GradDrop(3, leak=leak, activation_sign=activation_sign, seed=5)
    torch.testing.assert_close(run(method, grads.reshape(3, -1), z), by_hand(grads, z, draw, leak, activation_sign))


def test_full_leak_or_pure_signs_keep_everything():
    generator = torch.Generator().manual_seed(1)
    z = torch.rand(4, 5, generator=generator, dtype=torch.float64) + 0.1
    grads = torch.randn(3, 4, 5, generator=generator, dtype=torch.float64)
    torch.testing.assert_close(run(GradDrop(3, leak=1.0), grads.reshape(3, -1), z), grads.sum(0))
    agreeing = grads.abs()  # every task pushes every feature the same way: purity 1
    torch.testing.assert_close(run(GradDrop(3), agreeing.reshape(3, -1), z), agreeing.sum(0))


def test_backward_returns_none_and_heads_get_plain_gradients():
    model = HardSharing(3)
    method = GradDrop(3, leak=1.0)
    _, jac = task_jacobian(model, "representation")
    weights, grads = one_step(method, model)
    assert weights is None and "weights" not in method.diagnostics
    assert method.diagnostics["kept_fraction"].shape == (3,)
    assert_close_lists(grads, expected_gradients(model, jac.sum(0), torch.ones(3, dtype=torch.float64), "representation"))


def test_backward_needs_the_representation():
    model = HardSharing(3)
    losses, _ = model()
    with pytest.raises(ValueError, match="shared_representation"):
        GradDrop(3).backward(losses, shared_parameters=model.shared_parameters())


@pytest.mark.parametrize("option, value", [("leak", 1.5), ("leak", -0.1), ("activation_sign", 1), ("seed", "a")])
def test_bad_options_are_named(option, value):
    with pytest.raises(ValueError, match=option):
        GradDrop(3, **{option: value})
