"""GO4Align's presets, solved tasks, unit-free smoothing, overflow and the authors' clustering."""

import math
import re
import subprocess
import sys

import pytest
import torch
from helpers.weighting import sse
from hypothesis import given, settings
from hypothesis import strategies as st

from go4align.weighting import GO4Align, GO4AlignPaper, get, kmeans_1d, kmeans_random_1d, make

HISTORY = [[1.0, 2.0, 0.5, 4.0], [0.9, 2.5, 0.4, 3.0], [0.7, 3.0, 0.45, 2.0], [0.6, 2.8, 0.3, 1.5]]


def paper_weights(history, beta):
    """Eq. 5-7 by hand with K = M: gamma = mean(L) / L * softmax(-beta * cumulative L)."""
    totals = [sum(column) for column in zip(*history)]
    q = [math.exp(-beta * t) for t in totals]
    q = [v / sum(q) for v in q]
    last = history[-1]
    return [sum(last) / len(last) / loss * qm for loss, qm in zip(last, q)]


def default_weights(history, beta, max_scale):
    """The default form by hand with K = M: the relative risk L_t / (mean of L_1..L_t) in Eq. 6,
    and p = mean(L) / max(L, mean(L) / max_scale)."""
    m = len(history[0])
    cumulative, totals = [0.0] * m, [0.0] * m
    for t, losses in enumerate(history, start=1):
        totals = [a + b for a, b in zip(totals, losses)]
        cumulative = [c + loss * t / total for c, loss, total in zip(cumulative, losses, totals)]
    q = [math.exp(-beta * c) for c in cumulative]
    q = [v / sum(q) for v in q]
    last = history[-1]
    mean = sum(last) / m
    return [mean / max(loss, mean / max_scale) * qm for loss, qm in zip(last, q)]


def last_weights(method, history, dtype=torch.float64):
    for losses in history:
        method(torch.tensor(losses, dtype=dtype))
    return method.diagnostics["weights"].tolist()


def test_both_forms_pinned_on_a_fixed_loss_sequence():
    expected = paper_weights(HISTORY, beta=0.3)
    assert last_weights(GO4Align.paper(4, 4, beta=0.3), HISTORY) == pytest.approx(expected, rel=1e-12)
    assert last_weights(GO4Align(4, 4, preset="paper", beta=0.3), HISTORY) == pytest.approx(expected, rel=1e-12)
    assert last_weights(make("go4align-paper", 4, num_groups=4, beta=0.3), HISTORY) == pytest.approx(
        expected, rel=1e-12
    )
    # max_scale = 2 binds for the task at 0.3 (mean 1.4): its p is 2, not 4.67
    ours = default_weights(HISTORY, beta=0.3, max_scale=2.0)
    assert last_weights(GO4Align(4, 4, beta=0.3, max_scale=2.0), HISTORY) == pytest.approx(ours, rel=1e-12)
    assert last_weights(make("go4align", 4, num_groups=4, beta=0.3, max_scale=2.0), HISTORY) == pytest.approx(
        ours, rel=1e-12
    )
    # the presets' constants, as documented
    default, paper = GO4Align(4), GO4AlignPaper(4)
    assert (default.smoothing, default.max_scale, default.strict, default.beta) == ("relative", 100.0, False, 1e-4)
    assert (paper.smoothing, paper.max_scale, paper.strict, paper.beta) == ("absolute", math.inf, True, 1e-4)
    assert paper.min_weight_ratio == 0 and paper.preset == "paper" and get("go4align-paper") is GO4AlignPaper


def test_paper_variant_takes_every_option_but_the_preset():
    with pytest.raises(ValueError, match="go4align-paper fixes preset='paper'"):
        GO4AlignPaper(3, preset="default")
    assert GO4AlignPaper(3, smoothing="relative").smoothing == "relative"  # an explicit option wins


def test_a_solved_task_never_ends_the_run_and_its_weight_is_bounded():
    """One task's loss falls to exactly 0: the default goes on, holds that task's p at
    max_scale, records when, and warns once."""
    method = GO4Align(3, 3)
    history = [[1.0, 0.5, 2.0], [0.8, 1e-3, 1.9], [0.7, 0.0, 1.8], [0.6, 0.0, 1.7]]
    with pytest.warns(UserWarning, match=r"step 1 task\(s\) \[1\].*max_scale=100.0.*warned once") as caught:
        for losses in history:
            weights = method.backward(torch.tensor(losses, requires_grad=True))
            assert torch.isfinite(weights).all() and (weights > 0).all()
    assert len([w for w in caught if "max_scale" in str(w.message)]) == 1
    assert method.diagnostics["bounded"].tolist() == [False, True, False]
    assert method.diagnostics["scale_balance"][1].item() == pytest.approx(100.0)
    assert method.diagnostics["scale_balance"].max().item() <= 100.0 * (1 + 1e-12)
    # all losses zero: nothing to balance, p = 1
    method(torch.zeros(3))
    assert method.diagnostics["scale_balance"].tolist() == [1.0, 1.0, 1.0]


@pytest.mark.parametrize("num_tasks", [5, 80])  # losses read whole to the host, or only their extremes
@pytest.mark.parametrize("loss_floor", [None, 1e-6])
def test_the_bound_warning_names_the_tasks_that_diagnostics_mark(num_tasks, loss_floor):
    """The warning, checked on the host, names the same tasks as ``diagnostics["bounded"]``."""
    method = GO4Align(num_tasks, 2, loss_floor=loss_floor)
    losses = torch.linspace(1.0, 2.0, num_tasks, dtype=torch.float64)
    method(losses)  # no task below mean / 100
    assert not method.diagnostics["bounded"].any()
    losses[[1, 3]] = torch.tensor([0.0, 1e-3], dtype=torch.float64)  # mean / 100 is about 0.015
    with pytest.warns(UserWarning, match=r"at step 1 task\(s\) \[1, 3\] have a loss below mean\(L\) / max_scale"):
        method(losses)
    assert method.diagnostics["bounded"].nonzero().flatten().tolist() == [1, 3]


@pytest.mark.slow
def test_two_tasks_note_the_default_k_once():
    # In a fresh process: whether this process has noted it already depends on the tests before.
    code = (
        "import warnings\n"
        "from go4align.weighting import GO4Align\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    GO4Align(2); GO4Align(2); GO4Align(2, num_groups=2); GO4Align(3)\n"
        "print(*[str(w.message) for w in caught], sep='\\n')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    (note,) = done.stdout.splitlines()  # once per process, and only for the default K
    assert re.search(r"2 tasks: the default num_groups = min\(2, M\) = 2 .* no grouping", note)


scales = st.floats(1e-6, 1e6)
histories = st.lists(st.lists(st.floats(1e-3, 1e3), min_size=4, max_size=4), min_size=1, max_size=6)


@settings(max_examples=60, deadline=None)
@given(history=histories, scale=scales, beta=st.sampled_from([1e-4, 0.1, 3.0]))
def test_relative_smoothing_makes_weights_invariant_to_loss_units(history, scale, beta):
    """Every loss times one constant: the same weights (K = M, so no partition tie can flip)."""
    plain = GO4Align(4, 4, beta=beta)
    scaled = GO4Align(4, 4, beta=beta)
    for losses in history:
        a = plain(torch.tensor(losses, dtype=torch.float64)) and plain.diagnostics["weights"]
        b = scaled(torch.tensor(losses, dtype=torch.float64) * scale) and scaled.diagnostics["weights"]
        assert torch.allclose(a, b, rtol=1e-9, atol=0)


@settings(max_examples=60, deadline=None)
@given(history=histories, per_task=st.lists(scales, min_size=4, max_size=4))
def test_relative_smoothing_is_invariant_to_each_tasks_units(history, per_task):
    """Each task's loss times its own constant: Q (Eq. 6 on relative risks) is unchanged."""
    plain, scaled = GO4Align(4, 4, beta=1.0), GO4Align(4, 4, beta=1.0)
    factors = torch.tensor(per_task, dtype=torch.float64)
    for losses in history:
        plain(torch.tensor(losses, dtype=torch.float64))
        scaled(torch.tensor(losses, dtype=torch.float64) * factors)
        q, q_scaled = plain.diagnostics["smooth_alignment"], scaled.diagnostics["smooth_alignment"]
        assert torch.allclose(q, q_scaled, rtol=1e-9, atol=1e-300)


def test_absolute_smoothing_depends_on_units():
    """The contrast: the paper's Eq. 6 on losses of ~1e4 puts all of Q on one task."""
    method = GO4Align.paper(3, 3)
    for _ in range(10):
        method(torch.tensor([1e4, 2e4, 3e4], dtype=torch.float64))
    assert method.diagnostics["smooth_alignment"][0] > 0.99
    relative = GO4Align(3, 3)
    for _ in range(10):
        relative(torch.tensor([1e4, 2e4, 3e4], dtype=torch.float64))
    assert relative.diagnostics["smooth_alignment"].tolist() == pytest.approx([1 / 3] * 3)


@pytest.mark.parametrize(
    "make_method", [lambda: GO4Align(5, 5), lambda: GO4Align.paper(5, 5), lambda: GO4Align.paper(5, 2)]
)
def test_losses_from_1e_minus_30_to_1e30_give_finite_float32_weights(make_method):
    method = make_method()
    losses = torch.tensor([1e-30, 1e-10, 1.0, 1e10, 1e30], dtype=torch.float32, requires_grad=True)
    weights = method.backward(losses)
    assert torch.isfinite(weights.float()).all() and (weights >= 0).all()
    assert torch.isfinite(losses.grad).all()
    rescale = method.diagnostics["weight_rescale"].item()
    limit = torch.finfo(torch.float32).max
    objective = (weights * losses.detach().double()).sum().item()
    assert objective <= limit / 2 * (1 + 1e-9)
    if method.preset == "paper":  # p of the 1e-30 task is ~2e59: all weights divided alike until
        # the largest weight fits float32 and the objective half of it
        assert rescale > 1
        assert weights.max().item() == pytest.approx(limit, rel=1e-6) or objective == pytest.approx(limit / 2, rel=1e-6)
    else:  # bounded p: nothing to rescale
        assert rescale == 1


def test_weights_whose_weighted_losses_overflow_float32_are_rescaled_so_the_gradients_stay_finite():
    """Losses near float32's maximum with weights ~34 (one group, scale_balance="sum"): each
    weight fits, but w_m grad L_m did not (the gradients became inf)."""
    theta = torch.ones(3, requires_grad=True)
    scales = torch.tensor([1.0, 1e38, 3e38])
    method = GO4Align(3, 1, beta=1.0, scale_balance="sum")
    with pytest.warns(UserWarning, match="max_scale"):
        weights = method.backward(scales * theta)  # dL_m / dtheta_m = scales_m
    rescale = method.diagnostics["weight_rescale"].item()
    unscaled = weights * rescale
    assert unscaled.min().item() > 30 and rescale > 60  # without it, 34 * 3e38 = inf
    assert torch.isfinite(theta.grad).all()
    torch.testing.assert_close(theta.grad, (weights * scales.double()).float())
    assert (weights * scales.double()).sum().item() == pytest.approx(torch.finfo(torch.float32).max / 2, rel=1e-6)
    assert torch.equal(weights, weights[:1].expand(3))  # one group: one weight, divided alike


def test_loss_floor_is_a_float_and_refuses_ints_beyond_float():
    method = GO4Align(3, loss_floor=10**30)  # clamp_min refused the int (beyond int64)
    assert method.loss_floor == 1e30 and isinstance(method.loss_floor, float)
    theta = torch.ones(3, requires_grad=True)
    weights = method.backward(torch.tensor([1.0, 2.0, 3.0]) * theta)
    assert weights.tolist() == pytest.approx([1 / 3] * 3)  # every loss at the floor: equal weights
    with pytest.raises(ValueError, match=r"loss_floor must be a finite number >= 0, got 1000000000"):
        GO4Align(3, loss_floor=10**400)


def test_kmeans_random_reproduces_per_seed_and_reaches_a_local_optimum():
    gen = torch.Generator().manual_seed(0)
    values = torch.rand(11, generator=gen, dtype=torch.float64)
    runs = [[kmeans_random_1d(values, 5, torch.Generator().manual_seed(seed)) for _ in range(2)] for seed in range(20)]
    for first, second in runs:
        assert torch.equal(first, second)  # same seed, same labels
    distinct = {tuple(first.tolist()) for first, _ in runs}
    assert len(distinct) > 1  # the draw matters: a local optimum, not the global one
    exact_cost = sse(values.tolist(), kmeans_1d(values, 5).tolist())
    for labels in distinct:
        labels = list(labels)
        # Lloyd's fixed point: every value is nearest its own group's mean, groups ordered by mean
        means = {g: values[[i for i, l in enumerate(labels) if l == g]].mean().item() for g in set(labels)}
        for value, label in zip(values.tolist(), labels):
            assert all(abs(value - means[label]) <= abs(value - other) + 1e-6 for other in means.values())
        assert [means[g] for g in sorted(means)] == sorted(means.values())
        assert sse(values.tolist(), labels) >= exact_cost - 1e-12


def test_kmeans_random_option_steps_reproducibly():
    history = torch.rand(20, 11, generator=torch.Generator().manual_seed(3)) + 0.1
    first, second = (
        GO4Align(11, 5, clustering="kmeans-random", seed=7),
        GO4Align(11, 5, clustering="kmeans-random", seed=7),
    )
    for losses in history:
        assert torch.equal(
            first.backward(losses.clone().requires_grad_()), second.backward(losses.clone().requires_grad_())
        )
    assert "kmeans-random" in repr(first)


def test_kmeans_random_with_duplicates_and_fewer_values_than_groups():
    labels = kmeans_random_1d(torch.tensor([1.0, 1.0, 1.0, 2.0]), 3, torch.Generator().manual_seed(0))
    assert labels.shape == (4,) and labels[0] == labels[1] == labels[2] != labels[3]
    assert kmeans_random_1d(torch.tensor([0.5, 0.7]), 5, torch.Generator()).tolist() in ([0, 1], [1, 0])
