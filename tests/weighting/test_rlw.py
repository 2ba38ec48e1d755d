from __future__ import annotations

import pytest
import torch

from go4align.weighting import RLW


def test_weights_are_the_softmax_of_seeded_normal_draws():
    method = RLW(4, seed=7)
    generator = torch.Generator().manual_seed(7)
    losses = torch.ones(4, dtype=torch.float64)
    for _ in range(3):
        method(losses)
        expected = torch.softmax(torch.randn(4, generator=generator), 0)
        torch.testing.assert_close(method.diagnostics["weights"], expected)
        assert abs(float(expected.sum()) - 1) < 1e-6


def test_different_seeds_draw_differently():
    a, b = RLW(4, seed=0), RLW(4, seed=1)
    a(torch.ones(4)), b(torch.ones(4))
    assert not torch.equal(a.diagnostics["weights"], b.diagnostics["weights"])


def test_bad_seed_is_named():
    with pytest.raises(ValueError, match="seed"):
        RLW(3, seed="0")
