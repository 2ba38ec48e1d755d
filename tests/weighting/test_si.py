from __future__ import annotations

import pytest
import torch

from go4align.weighting import SI


@pytest.mark.parametrize("variant", ["log", "log1p"])
def test_weights_are_the_gradient_of_the_objective(variant):
    losses = torch.tensor([0.5, 2.0, 8.0], dtype=torch.float64, requires_grad=True)
    method = SI(3, variant=variant)
    method(losses).backward()
    expected = 1 / losses.detach() if variant == "log" else 1 / (1 + losses.detach())
    torch.testing.assert_close(losses.grad, expected)
    torch.testing.assert_close(method.diagnostics["weights"], expected)


def test_rescaling_a_task_does_not_change_the_update():
    x = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)
    grads = []
    for scale in (1.0, 100.0):
        x.grad = None
        SI(2)(torch.stack([scale * x[0] ** 2, x[1] ** 2 + 1])).backward()
        grads.append(x.grad.clone())
    torch.testing.assert_close(grads[0], grads[1])


def test_log_needs_positive_losses_and_log1p_does_not():
    with pytest.raises(ValueError, match="loss <= 0"):
        SI(2)(torch.tensor([0.0, 1.0]))
    SI(2, variant="log1p")(torch.tensor([0.0, 1.0]))


def test_bad_variant_is_named():
    with pytest.raises(ValueError, match="variant"):
        SI(2, variant="sqrt")
