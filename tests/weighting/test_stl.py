from __future__ import annotations

import pytest
import torch

from go4align.weighting import STL


@pytest.mark.parametrize("task", [0, 2])
def test_only_the_chosen_task_is_trained(task):
    losses = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64, requires_grad=True)
    method = STL(3, task=task)
    assert method(losses).item() == losses[task].item()
    expected = torch.zeros(3, dtype=torch.float64)
    expected[task] = 1
    torch.testing.assert_close(method.diagnostics["weights"], expected)
    assert f"task={task}" in repr(method)


@pytest.mark.parametrize("task", [-1, 3, 1.0, True, None])
def test_bad_task_is_named(task):
    with pytest.raises(ValueError, match="task"):
        STL(3, task=task)
