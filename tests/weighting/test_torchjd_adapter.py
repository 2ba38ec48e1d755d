"""The TorchJD adapter, and cross-checks of methods whose mathematics coincide with TorchJD's."""

from __future__ import annotations

import sys

import pytest
import torch

aggregation = pytest.importorskip("torchjd.aggregation")

from helpers.weighting import HardSharing, aggregate, assert_close_lists, one_step, random_jacobian  # noqa: E402

from go4align.weighting import IMTLG, MGDA, AlignedMTL, PCGrad, TorchJD  # noqa: E402


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mgda_matches_torchjd(seed):
    """TorchJD's Frank-Wolfe is exact for two tasks (one exact line search over the segment) and
    converges slowly beyond, so for more tasks the exact solver must be at least as good."""
    jac = random_jacobian(2, size=7, seed=seed)
    ours, _ = aggregate(MGDA(2, solver="exact"), jac)
    torch.testing.assert_close(ours / 2, aggregation.MGDAWeighting()(jac @ jac.T))
    jac = random_jacobian(5, size=7, seed=seed)
    gram = jac @ jac.T
    ours = aggregate(MGDA(5, solver="exact"), jac)[0] / 5
    theirs = aggregation.MGDAWeighting(epsilon=1e-7, max_iters=2000)(gram)
    assert float(ours @ gram @ ours) <= float(theirs @ gram @ theirs) + 1e-12
    assert float(ours @ gram @ ours) >= 0.99 * float(theirs @ gram @ theirs)


def test_pcgrad_matches_torchjd_for_two_tasks():
    jac = torch.tensor([[1.0, 0.0, 1.0], [-1.0, 1.0, 0.0]], dtype=torch.float64)
    ours, _ = aggregate(PCGrad(2), jac)
    torch.testing.assert_close(ours, aggregation.PCGradWeighting()(jac @ jac.T))


@pytest.mark.parametrize("num_tasks", [2, 3, 5])
def test_imtl_g_matches_torchjd(num_tasks):
    jac = random_jacobian(num_tasks, size=9, seed=num_tasks)
    ours, _ = aggregate(IMTLG(num_tasks), jac)
    torch.testing.assert_close(ours, aggregation.IMTLGWeighting()(jac @ jac.T))


@pytest.mark.parametrize("scale_mode", ["min", "median", "rmse"])
def test_aligned_mtl_matches_torchjd(scale_mode):
    jac = random_jacobian(4, size=9, seed=1)
    ours, _ = aggregate(AlignedMTL(4, scale_mode=scale_mode), jac)
    theirs = aggregation.AlignedMTLWeighting(scale_mode=scale_mode)(jac @ jac.T)
    torch.testing.assert_close(ours / 4, theirs)  # TorchJD averages the aligned gradients


def test_adapter_gives_the_native_method_gradients():
    model = HardSharing(3)
    native_weights, native = one_step(IMTLG(3), model)
    weights, adapted = one_step(TorchJD(3, "IMTLG"), model)
    torch.testing.assert_close(weights, native_weights, rtol=1e-5, atol=1e-6)  # float32 runs differ there
    assert_close_lists(adapted, native, rtol=1e-5, atol=1e-6)


def test_adapter_accepts_an_instance_and_directions_without_weights():
    model = HardSharing(3)
    weights, grads = one_step(TorchJD(3, aggregation.ConFIG()), model)
    assert weights is None
    assert all(torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("aggregator", ["NotAnAggregator", "Krum", 3, "Weighting"])
def test_bad_aggregators_are_named(aggregator):
    with pytest.raises(ValueError, match="aggregator"):
        TorchJD(3, aggregator)


def test_missing_torchjd_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchjd", None)
    with pytest.raises(ImportError, match=r"go4align\[torchjd\]"):
        TorchJD(3)
