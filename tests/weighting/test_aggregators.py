"""The aggregation stage alone: each method's pure function of the Jacobian or its Gramian, and
the Gramian itself; then the one clipping option every gradient method and FAMO share."""

from __future__ import annotations

import pytest
import torch
from helpers.weighting import HardSharing, build, gradients, one_step, random_jacobian
from hypothesis import given, settings
from hypothesis import strategies as st

from go4align.weighting.aligned_mtl import aligned_mtl_weights
from go4align.weighting.graddrop import graddrop_direction
from go4align.weighting.gradient import gramian
from go4align.weighting.imtl_g import imtl_g_weights
from go4align.weighting.mgda import mgda_weights
from go4align.weighting.pcgrad import pcgrad_weights

ONES = torch.ones(4, dtype=torch.float64)

#: name -> the weights of a pure aggregation of a float64 Gramian, for the generic checks
PURE = {
    "mgda-exact": lambda gram: mgda_weights(gram, ONES[: gram.shape[0]], solver="exact")[0],
    "pcgrad": lambda gram: pcgrad_weights(gram, [list(range(gram.shape[0]))] * gram.shape[0])[0],
    "imtl-g": lambda gram: imtl_g_weights(gram)[0],
    "aligned-mtl": lambda gram: aligned_mtl_weights(gram)[0],
}


@pytest.mark.parametrize("name", sorted(PURE))
def test_a_pure_aggregation_leaves_its_input_alone_and_repeats_itself(name):
    gram = gramian(random_jacobian(4, size=9, seed=3))
    copy = gram.clone()
    first, second = PURE[name](gram), PURE[name](gram)
    assert torch.equal(gram, copy)
    assert torch.equal(first, second)
    assert first.dtype == torch.float64 and first.shape == (4,)


@pytest.mark.parametrize("name", ["mgda-exact", "imtl-g", "aligned-mtl"])
def test_order_free_aggregations_are_permutation_equivariant(name):
    gram = gramian(random_jacobian(4, size=9, seed=5))
    order = torch.tensor([2, 0, 3, 1])
    permuted = PURE[name](gram[order][:, order])
    torch.testing.assert_close(permuted, PURE[name](gram)[order], atol=1e-7, rtol=1e-6)


@pytest.mark.parametrize("name", ["mgda", "pcgrad", "imtl-g", "aligned-mtl", "cagrad"])
def test_the_method_aggregates_with_its_pure_function(name):
    jac = random_jacobian(3, size=6, seed=1)
    method = build(name, 3)
    result = method.aggregate(jac, torch.ones(3, dtype=torch.float64), [])
    gram = gramian(jac)
    if name == "mgda":
        expected = mgda_weights(gram, torch.ones(3, dtype=torch.float64))[0]
    elif name == "pcgrad":
        generator = torch.Generator().manual_seed(0)
        orders = [torch.randperm(3, generator=generator).tolist() for _ in range(3)]
        expected = pcgrad_weights(gram, orders)[0]
    elif name == "imtl-g":
        expected = imtl_g_weights(gram)[0]
    elif name == "aligned-mtl":
        expected = aligned_mtl_weights(gram)[0]
    else:
        pytest.importorskip("scipy")
        from go4align.weighting.cagrad import cagrad_weights

        expected = cagrad_weights(gram)[0]
    torch.testing.assert_close(result.weights, expected, rtol=0, atol=0)


def test_graddrop_direction_by_hand():
    grads = torch.tensor([[1.0, -2.0, 0.5], [3.0, 1.0, -0.5]], dtype=torch.float64)
    draw = torch.tensor([0.5, 0.5, 0.5], dtype=torch.float64)
    direction, kept, purity = graddrop_direction(grads, grads, draw, eps=0.0)
    # purities 1, 1/6... per entry: entry 0 all positive (kept), entry 1 purity (-1/3+1)/2 = 1/3 <
    # 0.5: the negative gradient kept; entry 2 purity 0.5, not > 0.5 nor < 0.5: nothing kept
    torch.testing.assert_close(direction, torch.tensor([4.0, -2.0, 0.0], dtype=torch.float64))
    torch.testing.assert_close(kept, torch.tensor([2 / 3, 1 / 3], dtype=torch.float64))
    torch.testing.assert_close(purity, torch.tensor((1 + 1 / 3 + 0.5) / 3, dtype=torch.float64))


@settings(max_examples=40, deadline=None)
@given(exponents=st.lists(st.integers(-35, 35), min_size=2, max_size=4), seed=st.integers(0, 100))
def test_the_float32_gramian_matches_float64_across_scales(exponents, seed):
    """Rows of any size in float32's range: the Gramian in float32 (direct or normalised) agrees
    with the float64 one to float32's precision, and is finite."""
    base = torch.randn(len(exponents), 50, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    jac = base * torch.tensor([10.0**e for e in exponents], dtype=torch.float64)[:, None]
    exact = jac @ jac.T
    approx = gramian(jac.float())
    assert approx.dtype == torch.float64 and bool(torch.isfinite(approx).all())
    scale = exact.diagonal().sqrt()
    torch.testing.assert_close(
        approx / scale[:, None] / scale[None, :], exact / scale[:, None] / scale[None, :], atol=1e-5, rtol=0
    )


# -- clipping: one option, one meaning ----------------------------------------------------------------
#: each method's default max_norm, equal to the reference it follows (docs in _clipping.py)
DEFAULT_MAX_NORM = {
    "mgda": 0.0,
    "pcgrad": 0.0,
    "cagrad": 0.0,
    "imtl-g": 0.0,
    "aligned-mtl": 0.0,
    "nash-mtl": 1.0,
    "graddrop": 1.0,
    "famo": 0.0,
}


def _available(name):
    if name == "nash-mtl":
        pytest.importorskip("cvxpy")
    if name == "cagrad":
        pytest.importorskip("scipy")


@pytest.mark.parametrize("name", sorted(DEFAULT_MAX_NORM))
def test_default_clipping_follows_the_reference(name):
    _available(name)
    assert build(name, 3).max_norm == DEFAULT_MAX_NORM[name]


@pytest.mark.parametrize("name", sorted(DEFAULT_MAX_NORM))
@pytest.mark.parametrize("accumulated", [False, True])
def test_max_norm_clips_what_the_call_adds_to_the_shared_parameters(name, accumulated):
    _available(name)
    model = HardSharing(3)
    model.y.mul_(100)  # a shared gradient far longer than max_norm
    _, free = one_step(build(name, 3, max_norm=0), model)
    method = build(name, 3, max_norm=0.5)
    model.zero_grad()
    earlier = [torch.full_like(p, 0.25) for p in model.parameters()] if accumulated else None
    if accumulated:
        for p, g in zip(model.parameters(), earlier):
            p.grad = g.clone()
    losses, z = model()
    method.backward(losses, shared_parameters=model.shared_parameters(), shared_representation=z)
    added = gradients(model) if not accumulated else [g - e for g, e in zip(gradients(model), earlier)]
    shared = len(model.shared_parameters())
    norm = float(torch.linalg.vector_norm(torch.cat([g.reshape(-1) for g in added[:shared]]).double()))
    assert abs(norm - 0.5) < 1e-5
    free_norm = float(torch.linalg.vector_norm(torch.cat([g.reshape(-1) for g in free[:shared]]).double()))
    assert abs(float(method.diagnostics["shared_grad_norm"]) - free_norm) <= 1e-5 * free_norm
    for a, f in zip(added[shared:], free[shared:]):  # heads are never clipped
        torch.testing.assert_close(a, f, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["mgda", "famo", "graddrop"])
def test_clipping_needs_the_shared_parameters(name):
    model = HardSharing(3)
    losses, z = model()
    options = {"target": "representation"} if name != "famo" else {}
    with pytest.raises(ValueError, match="shared_parameters"):
        build(name, 3, max_norm=1.0, **options).backward(losses, shared_representation=z)
