from __future__ import annotations

import numpy as np
import pytest
import torch

from go4align.weighting import DWA


def reference_iteration_weights(loss_rows, num_tasks, window=25, temperature=2.0):
    """The reference's bookkeeping restated with numpy float32: window of ones, current step
    included, weights change once more than ``window`` steps were seen; loss is the mean."""
    costs = np.ones((2 * window, num_tasks), dtype=np.float32)
    weights = np.ones(num_tasks, dtype=np.float32)
    seen = []
    for t, row in enumerate(loss_rows):
        costs = np.concatenate([costs[1:], row[None].astype(np.float32)])
        if t > window:
            ratio = costs[window:].mean(0) / costs[:window].mean(0)
            weights = num_tasks * np.exp(ratio / temperature) / np.exp(ratio / temperature).sum()
        seen.append(weights / num_tasks)
    return seen


def test_iteration_mode_matches_the_reference_bookkeeping():
    rng = np.random.default_rng(0)
    rows = np.exp(-np.linspace(0, 3, 40))[:, None] * rng.uniform(0.5, 2, size=(40, 3))
    method = DWA(3)
    expected = reference_iteration_weights(rows, 3)
    for t, row in enumerate(rows):
        method(torch.tensor(row))
        np.testing.assert_allclose(method.diagnostics["weights"].numpy(), expected[t], rtol=2e-6)
        if t <= 25:
            np.testing.assert_array_equal(method.diagnostics["weights"].numpy(), np.full(3, 1 / 3))
    assert not np.allclose(expected[26], 1 / 3)


def test_mean_reduction_in_the_objective():
    losses = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    assert DWA(3)(losses).item() == pytest.approx(2.0)
    assert DWA(3, reduction="sum")(losses).item() == pytest.approx(6.0)


def test_epoch_mode_uses_the_ratio_of_the_last_two_epoch_means():
    method = DWA(2, mode="epoch")
    epochs = [[[4.0, 1.0], [2.0, 1.0]], [[1.5, 1.0], [1.5, 0.5]]]
    for losses in epochs:
        for row in losses:
            method(torch.tensor(row, dtype=torch.float64))
            torch.testing.assert_close(method.diagnostics["weights"], torch.ones(2, dtype=torch.float64))
        method.end_epoch()
    method(torch.tensor([1.0, 1.0], dtype=torch.float64))
    ratio = torch.tensor([1.5 / 3.0, 0.75 / 1.0], dtype=torch.float64)
    expected = 2 * torch.softmax(ratio / 2, 0)
    torch.testing.assert_close(method.diagnostics["weights"], expected.float().double(), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(
    "option, value",
    [("temperature", 0.0), ("temperature", -1.0), ("mode", "step"), ("window", 0), ("reduction", "max")],
)
def test_bad_options_are_named(option, value):
    with pytest.raises(ValueError, match=option):
        DWA(3, **{option: value})
