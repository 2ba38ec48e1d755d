import inspect
import math

import pytest
import torch
from helpers.weighting import sse
from hypothesis import given, settings
from hypothesis import strategies as st

from go4align.weighting import LS, GO4Align, Grouped, LossWeighting, NonFiniteLossError, kmeans_1d, make


def hand_indicators(history, beta, scale="mean"):
    """Eq. 5-7 with plain floats, Q in its multiplicative form (Eq. 6)."""
    m = len(history[0])
    q = [1.0 / m] * m
    for losses in history:
        q = [qi * math.exp(-beta * li) for qi, li in zip(q, losses)]
        total = sum(q)
        q = [qi / total for qi in q]
    last = history[-1]
    numerator = sum(last) / m if scale == "mean" else sum(last)
    p = [numerator / li for li in last]
    return p, q, [pi * qi for pi, qi in zip(p, q)]


def run(method, history, device="cpu", dtype=torch.float64):
    for losses in history:
        method(torch.tensor(losses, dtype=dtype, device=device))
    return method.diagnostics


@pytest.mark.parametrize("scale", ["mean", "sum"])
def test_equations_5_to_7_by_hand(scale, device, dtype):
    history = [[1.0, 2.0, 0.5], [0.9, 2.5, 0.4], [0.7, 3.0, 0.45]]
    p, q, gamma = hand_indicators(history, beta=0.3, scale=scale)
    d = run(GO4Align.paper(3, num_groups=3, beta=0.3, scale_balance=scale), history, device, dtype)
    tol = 1e-12 if dtype == torch.float64 else 1e-6
    assert d["scale_balance"].tolist() == pytest.approx(p, rel=tol)
    assert d["smooth_alignment"].tolist() == pytest.approx(q, rel=tol)
    assert d["indicators"].tolist() == pytest.approx(gamma, rel=tol)
    assert d["weights"].tolist() == pytest.approx(gamma, rel=tol)  # K = M: no grouping


def test_two_groups_by_hand():
    losses = [1.0, 2.0, 0.5]
    _, _, gamma = hand_indicators([losses], beta=1e-4)
    d = run(GO4Align.paper(3, num_groups=2), [losses])
    # gamma is about [0.39, 0.19, 0.78]: the two small ones form a group
    low = (gamma[0] + gamma[1]) / 2
    assert d["groups"].tolist() == [0, 0, 1]
    assert d["weights"].tolist() == pytest.approx([low, low, gamma[2]], rel=1e-12)
    assert d["group_weights"].tolist() == pytest.approx([low, gamma[2]], rel=1e-12)


def test_sum_scale_is_m_times_mean_scale():
    history = [[1.0, 2.0, 0.5, 4.0]]
    mean = run(GO4Align(4, 2), history)["weights"]
    total = run(GO4Align(4, 2, scale_balance="sum"), history)["weights"]
    assert torch.allclose(total, 4 * mean, rtol=1e-12)


def test_backward_gives_weighted_gradient():
    theta = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64, requires_grad=True)
    losses = torch.stack([theta[0] ** 2 + 1, (theta[1] - 1) ** 2 + 0.5, theta.sum() ** 2 + 0.1])
    method = GO4Align(3, 2)
    weights = method.backward(losses, retain_graph=True)
    expected = torch.autograd.grad((weights * losses).sum(), theta)[0]
    assert torch.allclose(theta.grad, expected)
    assert weights.requires_grad is False


def test_ablations():
    history = [[1.0, 2.0, 0.5], [0.8, 2.2, 0.6]]
    d = run(GO4Align(3, 3, scale_balance=None), history)
    assert d["scale_balance"].tolist() == [1.0, 1.0, 1.0]
    d = run(GO4Align(3, 3, smooth_alignment=False), history)
    assert d["smooth_alignment"].tolist() == pytest.approx([1 / 3] * 3)
    d = run(GO4Align(3, 3, beta=0.0), history)
    assert d["smooth_alignment"].tolist() == pytest.approx([1 / 3] * 3, rel=1e-15)
    d = run(GO4Align(3, 1), history)
    assert d["weights"].tolist() == pytest.approx([float(d["indicators"].mean())] * 3, rel=1e-12)
    d = run(GO4Align(3, 2, clustering=[0, 1, 0], group_weights=[0.8, 0.1]), history)
    assert d["weights"].tolist() == pytest.approx([0.8, 0.1, 0.8])
    for clustering in ["lloyd", "random"]:
        d = run(GO4Align(3, 2, clustering=clustering), history)
        assert torch.isfinite(d["weights"]).all() and (d["weights"] > 0).all()


loss_lists = st.lists(st.floats(1e-3, 1e3), min_size=1, max_size=9)


@settings(max_examples=60, deadline=None)
@given(losses=loss_lists, k=st.integers(1, 9), seed=st.integers(0, 10_000))
def test_permutation_equivariance(losses, k, seed):
    """Permuting the tasks permutes the weights. The two runs' indicators may differ in their
    last bits (the mean loss and the softmax sum add in a different order), so where two
    partitions are equally good up to float64 rounding of the K-means objective, either may be
    chosen: then the other run's partition must be as good for this run's indicators."""
    m = len(losses)
    k = min(k, m)
    gen = torch.Generator().manual_seed(seed)
    history = torch.tensor(losses, dtype=torch.float64) * torch.rand(3, m, generator=gen, dtype=torch.float64).add(0.5)
    perm = torch.randperm(m, generator=gen)
    back = torch.argsort(perm)  # task i of a is task back[i] of b
    a, b = GO4Align(m, k, beta=0.1), GO4Align(m, k, beta=0.1)
    for step in history:
        wa = a.backward(step.clone().requires_grad_())
        wb = b.backward(step[perm].clone().requires_grad_())
        if torch.allclose(wb, wa[perm], rtol=1e-9, atol=0):
            continue
        gamma = a.diagnostics["indicators"].tolist()
        own, other = a.diagnostics["groups"].tolist(), b.diagnostics["groups"][back].tolist()
        assert own != other
        total = sse(gamma, [0] * m)
        assert abs(sse(gamma, other) - sse(gamma, own)) <= 1e-12 * total


@settings(max_examples=60, deadline=None)
@given(losses=loss_lists, k=st.integers(1, 9))
def test_properties_k_equal_m_and_k_one(losses, k):
    m = len(losses)
    x = torch.tensor(losses, dtype=torch.float64)
    full = GO4Align(m, m)
    full(x)
    assert torch.allclose(full.diagnostics["weights"], full.diagnostics["indicators"], rtol=1e-12)
    one = GO4Align(m, 1)
    one(x)
    gamma = one.diagnostics["indicators"]
    assert torch.allclose(one.diagnostics["weights"], gamma.mean().expand(m), rtol=1e-12)
    some = GO4Align(m, min(k, m))
    some(x)
    w = some.diagnostics["weights"]
    assert torch.isfinite(w).all() and (w > 0).all()
    again = GO4Align(m, min(k, m))
    again(x)
    assert torch.equal(again.diagnostics["weights"], w)  # deterministic


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"preset": "paper"},
        {"clustering": "random", "group_weights": "random"},
        {"clustering": "lloyd", "num_groups": 3},
        {"clustering": "kmeans-random", "num_groups": 3},
    ],
)
def test_state_dict_resume_is_bit_identical(options):
    gen = torch.Generator().manual_seed(0)
    history = torch.rand(10, 5, generator=gen, dtype=torch.float64) * 3 + 0.1
    reference = GO4Align(5, beta=0.5, **options)
    for losses in history[:5]:
        reference(losses)
    saved = {k: v.clone() if torch.is_tensor(v) else v for k, v in reference.state_dict().items()}
    expected = [reference(losses) and reference.diagnostics["weights"] for losses in history[5:]]
    resumed = GO4Align(5, beta=0.5, **options)
    resumed.load_state_dict(saved)
    for losses, weights in zip(history[5:], expected):
        resumed(losses)
        assert torch.equal(resumed.diagnostics["weights"], weights)
    assert int(resumed.step) == 10


def test_closed_form_of_smooth_alignment_matches_recursion():
    """Q_t = softmax(-beta * cumulative risk): the basis of the long-run test below."""
    gen = torch.Generator().manual_seed(1)
    history = torch.rand(10_000, 4, generator=gen, dtype=torch.float64) * 10
    method = GO4Align(4, beta=1e-3, smoothing="absolute")
    for losses in history:
        _, smooth, _ = method.indicators(losses)
    closed = torch.log_softmax(-1e-3 * history.sum(0), 0)
    assert torch.allclose(smooth, closed.exp(), rtol=1e-9, atol=0)
    # the state is log Q up to a constant: from log Q_0 = -log M, minus beta times the sum
    assert torch.allclose(method.log_alignment, -math.log(4) - 1e-3 * history.sum(0), rtol=1e-12)
    assert torch.allclose(torch.log_softmax(method.log_alignment, 0), closed, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("num_groups", [2, 5, 8])
def test_a_million_steps_of_extreme_scales_keep_weights_finite_and_positive(num_groups):
    """Loss scales 1e-4..1e4 for a million steps: the state is set to its closed form after
    1e6 steps (checked against the recursion above), then the method keeps stepping."""
    m = 8
    gen = torch.Generator().manual_seed(0)
    scales = torch.logspace(-4, 4, m, dtype=torch.float64)
    cumulative = scales * 1_000_000 * (1 + 0.1 * torch.randn(m, generator=gen, dtype=torch.float64))
    method = GO4Align(m, num_groups)
    method.log_alignment = torch.log_softmax(-method.beta * cumulative, 0)
    for _ in range(1000):
        losses = scales * torch.exp(torch.randn(m, generator=gen, dtype=torch.float64))
        weights = method.backward(losses.float().requires_grad_())
        assert torch.isfinite(weights).all() and (weights > 0).all()
        assert (weights.float() > 0).all()  # still representable in float32
    # The Q of the largest task is far below float64's range, yet it is not stuck at zero:
    # in log space it can recover once its losses fall.
    assert method.diagnostics["smooth_alignment"][-1] == 0
    assert torch.isfinite(method.log_alignment).all()


def test_zero_and_negative_losses_with_floor():
    method = GO4Align(3, loss_floor=1e-6)
    weights = method.backward(torch.tensor([0.0, -1.0, 2.0], requires_grad=True))
    assert torch.isfinite(weights).all() and (weights > 0).all()


def test_diagnostics_are_detached_and_complete():
    method = GO4Align(3)
    method.backward(torch.tensor([1.0, 2.0, 3.0], requires_grad=True))
    keys = {
        "losses",
        "scale_balance",
        "smooth_alignment",
        "indicators",
        "groups",
        "group_weights",
        "group_sizes",
        "weights",
    }
    assert keys <= set(method.diagnostics)
    assert not any(v.requires_grad for v in method.diagnostics.values())


def test_diagnostics_computed_when_read_hold_their_own_step():
    """Group labels and sizes are derived only when read, and still describe the step that
    recorded them after later steps; copies and pickles hold the values."""
    import copy

    method = GO4Align(6, 2)
    method(torch.tensor([1.0, 1.1, 5.0, 5.2, 9.0, 9.5]))
    first = method.diagnostics
    copied = copy.deepcopy(method)
    method(torch.tensor([9.5, 9.0, 5.2, 5.0, 1.1, 1.0]))
    for diagnostics in (first, copied.diagnostics):
        assert torch.equal(diagnostics["groups"], kmeans_1d(diagnostics["indicators"], 2))
        assert diagnostics["group_sizes"].sum().item() == 6
    assert not torch.equal(method.diagnostics["groups"], first["groups"])


@pytest.mark.parametrize("num_tasks, num_groups", [(3, 2), (40, 2), (11, 5), (12, 3), (40, 5), (100, 2), (300, 4)])
def test_weights_are_the_group_means_of_the_indicators(num_tasks, num_groups):
    """Every code path of the exact grouping (K = 2 closed form up to 64 tasks, labels beyond,
    every partition of small M at K >= 3, the DP beyond) gives each task its group's mean
    indicator."""
    gen = torch.Generator().manual_seed(num_tasks)
    method = GO4Align(num_tasks, num_groups, beta=0.1)
    for _ in range(3):
        method(torch.rand(num_tasks, generator=gen) + 0.1)
    d = method.diagnostics
    weights = d["weights"]
    assert torch.equal(d["groups"], kmeans_1d(d["indicators"], num_groups))
    for group in d["groups"].unique().tolist():
        members = d["groups"] == group
        mean = d["indicators"][members].mean()
        assert torch.allclose(weights[members], mean.expand(int(members.sum())), rtol=1e-12, atol=0)


def test_float32_losses_give_float32_objective(device):
    method = GO4Align(3).to(device)
    losses = torch.tensor([1.0, 2.0, 3.0], device=device, requires_grad=True)
    objective = method(losses)
    assert objective.dtype == torch.float32 and objective.device == losses.device


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("num_tasks, num_groups", [(3, 2), (11, 5), (40, 5), (100, 2), (1000, 5)])
def test_no_host_synchronisation_on_cuda(num_tasks, num_groups):
    method = GO4Align(num_tasks, num_groups, validate=False).cuda()
    losses = torch.rand(num_tasks, device="cuda", requires_grad=True) + 0.1
    method.backward(losses)  # warm-up: buffers move to the device once
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        method.backward(losses * 1.0)
    finally:
        torch.cuda.set_sync_debug_mode("default")


class _Scaled(LossWeighting):
    """A method with a trainable parameter, to check Grouped routes gradients to it."""

    def __init__(self, num_tasks):
        super().__init__(num_tasks)
        self.log_scale = torch.nn.Parameter(torch.zeros(num_tasks))

    def weigh(self, losses):
        weights = torch.exp(-self.log_scale) * torch.arange(1.0, self.num_tasks + 1)
        self.record(losses=losses, weights=weights)
        return weights

    def objective(self, losses, weights):
        return (weights * losses).sum() + self.log_scale.sum()


def test_grouped_wrapper_groups_inner_weights_and_trains_its_parameters():
    inner = _Scaled(4)
    grouped = Grouped(inner, num_groups=2)
    theta = torch.ones(4, requires_grad=True)
    losses = theta * torch.tensor([1.0, 2.0, 3.0, 4.0])
    weights = grouped.backward(losses)
    assert weights.tolist() == pytest.approx([1.5, 1.5, 3.5, 3.5])
    assert theta.grad.tolist() == pytest.approx([1.5, 3.0, 10.5, 14.0])
    # d/ds [exp(-s) * i * L_i + s] with L detached
    assert inner.log_scale.grad.tolist() == pytest.approx([-1 + 1, -4 + 1, -9 + 1, -16 + 1])
    assert grouped.diagnostics["groups"].tolist() == [0, 0, 1, 1]
    assert Grouped(LS(3), 2).backward(torch.ones(3, requires_grad=True)).tolist() == [1, 1, 1]


def test_grouped_wrapper_takes_the_protocols_forward_half_precision_and_all():
    """Grouped is an ordinary loss-oriented method: half-precision losses are weighed in float32
    and a weight that the losses' dtype cannot hold is refused (SI's 1 / L of a tiny loss in
    float16), not turned into inf; its objective has the inner method's value on top."""
    from go4align.weighting import SI

    small = torch.tensor([1e-5, 2e-5, 1.0], dtype=torch.float16, requires_grad=True)
    with pytest.raises(ValueError, match="does not fit the losses' dtype torch.float16"):
        Grouped(SI(3), 2).backward(small)
    grouped = Grouped(SI(3), 2)
    losses = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float16, requires_grad=True)
    objective = grouped(losses)
    assert objective.dtype == torch.float32 and torch.isfinite(objective)
    weights = grouped.diagnostics["weights"]
    inner = grouped.diagnostics["inner_weights"]
    assert weights.tolist() == pytest.approx([2.0, 0.75, 0.75])  # SI's 1 / L, grouped {2}, {1, 0.5}
    assert inner.tolist() == pytest.approx([2.0, 1.0, 0.5])
    detached = losses.detach().float()
    expected = torch.dot(weights.float(), detached) + torch.log(detached).sum()
    assert objective.item() == pytest.approx(expected.item(), rel=1e-6)
    assert grouped.step == grouped.method.step == 1
    with pytest.raises(RuntimeError, match="weigh"):  # the step's objective is taken: not twice
        grouped.objective(losses.float(), weights)


def test_registry():
    method = make("go4align", 3, num_groups=3)
    assert isinstance(method, GO4Align) and method.num_groups == 3
    with pytest.raises(ValueError, match="unknown method 'nope'.*go4align"):
        make("nope", 3)


@pytest.mark.parametrize(
    "losses, error, match",
    [
        ([1.0, 2.0], ValueError, r"length num_tasks=3, got shape \(2,\)"),
        ([[1.0, 2.0, 3.0]], ValueError, r"got shape \(1, 3\)"),
        ([1.0, float("nan"), 3.0], NonFiniteLossError, r"non-finite loss at step 0 for task\(s\) \[1\]"),
        ([1.0, 2.0, float("inf")], NonFiniteLossError, r"task\(s\) \[2\]: \[inf\]"),
        ([-1.0, 2.0, 3.0], ValueError, r"loss < 0 at step 0 for task\(s\) \[0\]: \[-1.0\].*loss_floor"),
    ],
)
def test_bad_losses(losses, error, match):
    with pytest.raises(error, match=match):
        GO4Align(3)(torch.tensor(losses))


@pytest.mark.parametrize("make_strict", [lambda: GO4Align(3, strict=True), lambda: GO4Align.paper(3)])
@pytest.mark.parametrize("losses, bad", [([1.0, 0.0, 3.0], r"\[1\]: \[0.0\]"), ([-1.0, 2.0, 3.0], r"\[0\]: \[-1.0\]")])
def test_strict_mode_refuses_losses_at_or_below_zero(make_strict, losses, bad):
    with pytest.raises(ValueError, match=r"loss <= 0 at step 0 for task\(s\) " + bad + ".*loss_floor"):
        make_strict()(torch.tensor(losses))


@pytest.mark.parametrize("name", ["si", "gls", "go4align-paper"])
def test_a_loss_at_zero_is_refused_naming_only_options_the_method_has(name):
    """SI and GLS have no loss_floor: their error must not send users to it; GO4Align's does."""
    method = make(name, 3)
    with pytest.raises(ValueError, match=r"loss <= 0 at step 0 for task\(s\) \[1\]") as error:
        method(torch.tensor([1.0, 0.0, 3.0]))
    assert ("loss_floor" in str(error.value)) == ("loss_floor" in inspect.signature(type(method)).parameters)


@pytest.mark.parametrize("num_tasks", [3, 64, 65, 1000])
@pytest.mark.parametrize(
    "bad, error", [(float("nan"), NonFiniteLossError), (-float("inf"), NonFiniteLossError), (0.0, ValueError)]
)
def test_bad_values_are_found_by_either_check(num_tasks, bad, error):
    """Up to 64 tasks the values are read whole, beyond through their extremes: the same
    errors either way, naming the task; losses that may be <= 0 (LS) still refuse non-finite."""
    losses = torch.linspace(0.5, 2.0, num_tasks)
    losses[num_tasks // 2] = bad
    with pytest.raises(error, match=rf"task\(s\) \[{num_tasks // 2}\]"):
        GO4Align(num_tasks, strict=True)(losses)
    if error is NonFiniteLossError:
        with pytest.raises(NonFiniteLossError, match=rf"task\(s\) \[{num_tasks // 2}\]"):
            LS(num_tasks)(losses)
    else:
        LS(num_tasks)(losses)  # zero and negative losses are fine without a scale term


def test_bad_loss_types():
    with pytest.raises(TypeError, match="torch.Tensor, got list"):
        GO4Align(3)([1.0, 2.0, 3.0])
    with pytest.raises(TypeError, match="floating-point tensor, got dtype torch.int64"):
        GO4Align(3)(torch.tensor([1, 2, 3]))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_tasks": 0}, "num_tasks must be a positive int, got 0"),
        ({"num_tasks": True}, "num_tasks"),
        ({"num_groups": 0}, r"num_groups must be an int in \[1, num_tasks=3\], got 0"),
        ({"num_groups": 4}, "got 4"),
        ({"beta": -1.0}, "beta must be a finite number >= 0, got -1.0"),
        ({"beta": float("nan")}, "beta"),
        ({"scale_balance": "max"}, "scale_balance must be one of .* got 'max'"),
        ({"smooth_alignment": "yes"}, "smooth_alignment"),
        ({"loss_floor": 0.0}, "loss_floor must be > 0"),
        ({"loss_floor": -1.0}, "loss_floor"),
        ({"min_weight_ratio": 1.0}, "min_weight_ratio"),
        ({"validate": 1}, "validate must be a bool"),
        ({"clustering": "sdp"}, "clustering must be one of"),
        ({"preset": "authors"}, "preset must be one of .* got 'authors'"),
        ({"smoothing": "log"}, "smoothing must be one of .* got 'log'"),
        ({"max_scale": 0.5}, r"max_scale must be a number >= 1 \(math.inf for no bound\), got 0.5"),
        ({"max_scale": float("nan")}, "max_scale"),
        ({"strict": "no"}, "strict must be a bool, got 'no'"),
        ({"strict": False, "max_scale": math.inf}, "strict=False needs a finite max_scale or a loss_floor"),
    ],
)
def test_bad_arguments(kwargs, match):
    kwargs = {"num_tasks": 3, **kwargs}
    with pytest.raises(ValueError, match=match):
        GO4Align(**kwargs)


def test_repr_names_the_options():
    text = repr(GO4Align(3, 2, beta=0.5))
    assert "num_groups=2" in text and "beta=0.5" in text and "clustering='exact'" in text
