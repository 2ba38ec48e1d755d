"""Hostile inputs thrown at every method of ``helpers.methods`` with its defaults: random sizes,
every floating dtype, loss and gradient scales from 1e-30 to 1e30, and degenerate cases (one task,
duplicate losses, identical gradients, zero gradients). Each method either returns finite weights
and writes finite gradients, or raises a ValueError/TypeError that names what it got."""

from __future__ import annotations

import math

import pytest
import torch
from helpers.methods import DEFAULTS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

KINDS = ("random", "duplicate_losses", "identical_gradients", "zero_gradients")
DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


@st.composite
def problems(draw):
    return {
        "tasks": draw(st.integers(1, 5)),
        "width": draw(st.integers(1, 6)),
        "dtype": draw(st.sampled_from(DTYPES)),
        "scale": 10.0 ** draw(st.integers(-30, 30)),
        "kind": draw(st.sampled_from(KINDS)),
        "seed": draw(st.integers(0, 2**16)),
    }


def losses_of(problem, theta):
    """``L_m = scale * (mean((x theta_row . a_m)^2) + b_m)``: positive, with the gradients the
    kind asks for; also the representation ``x * theta`` (2 samples)."""
    m, d, scale = problem["tasks"], problem["width"], problem["scale"]
    generator = torch.Generator().manual_seed(problem["seed"])
    x = torch.randn(2, d, generator=generator).to(theta.dtype)
    a = torch.randn(m, d, generator=generator)
    b = torch.rand(m, generator=generator) + 0.5
    if problem["kind"] in ("duplicate_losses", "identical_gradients"):
        a = a[:1].expand(m, d)
    if problem["kind"] == "duplicate_losses":
        b = b[:1].expand(m)
    if problem["kind"] == "zero_gradients":
        a = torch.zeros(m, d)
    z = x * theta
    inner = ((z @ a.T.to(theta.dtype)) ** 2).mean(0)
    return scale * (inner + b.to(theta.dtype)), z


def representable(problem) -> bool:
    """Whether the task gradients (in float64) and the scale that the chain rule passes through,
    times a margin for weights up to ~M, fit the problem's dtype."""
    if problem["scale"] * 10 * problem["tasks"] >= torch.finfo(problem["dtype"]).max:
        return False
    theta = torch.nn.Parameter(torch.linspace(0.5, 1.5, problem["width"]).double())
    losses, _ = losses_of(problem, theta)
    largest = max(float(torch.autograd.grad(loss, theta, retain_graph=True)[0].abs().max()) for loss in losses)
    return largest * 10 * problem["tasks"] < torch.finfo(problem["dtype"]).max


@pytest.mark.filterwarnings("ignore:.*zero shared gradient:RuntimeWarning")
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problem=problems())
@pytest.mark.parametrize("info, options", DEFAULTS)
def test_finite_results_or_a_clear_error(info, options, problem):
    theta = torch.nn.Parameter(torch.linspace(0.5, 1.5, problem["width"]).to(problem["dtype"]))
    losses, z = losses_of(problem, theta)
    try:
        weighting = info.make_or_skip(problem["tasks"], **options)
        weights = weighting.backward(losses, shared_parameters=[theta], shared_representation=z)
        weighting.after_step(lambda: losses_of(problem, theta.detach())[0])
    except (ValueError, TypeError) as error:
        assert str(error), "an error must say what was wrong"
        return
    finite_losses = bool(torch.isfinite(losses).all())
    assert finite_losses, f"{info.label} accepted non-finite losses {losses.tolist()}"
    if weights is not None:
        assert weights.dtype in (torch.float32, torch.float64), weights.dtype
        assert torch.isfinite(weights).all(), (info.label, problem, weights)
    assert theta.grad is not None
    if representable(problem):  # else autograd itself overflows, a GradScaler's business
        assert torch.isfinite(theta.grad).all(), (info.label, problem, theta.grad)
    assert math.isfinite(float(weighting.step))
