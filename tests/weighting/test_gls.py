from __future__ import annotations

import pytest
import torch

from go4align.weighting import GLS


def test_objective_is_the_geometric_mean_and_weights_its_gradient():
    losses = torch.tensor([0.5, 2.0, 8.0], dtype=torch.float64, requires_grad=True)
    method = GLS(3)
    value = method(losses)
    torch.testing.assert_close(value, torch.tensor(2.0, dtype=torch.float64))
    value.backward()
    expected = 2.0 / (3 * losses.detach())
    torch.testing.assert_close(losses.grad, expected)
    torch.testing.assert_close(method.diagnostics["weights"], expected)


def test_needs_positive_losses():
    with pytest.raises(ValueError, match="loss <= 0"):
        GLS(2)(torch.tensor([0.0, 1.0]))
