import itertools
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.weighting import sse
from hypothesis import given, settings
from hypothesis import strategies as st

import go4align
from go4align.weighting import FAMO, UW, Grouped, Grouping, kmeans_1d, kmeans_random_1d, lloyd_1d, spectral_1d


def brute_force_sse(values, k):
    """Minimum K-means cost over every assignment of the values to at most k groups."""
    return min(sse(values, labels) for labels in itertools.product(range(k), repeat=len(values)))


values_strategy = st.lists(
    st.one_of(st.floats(0.0, 10.0, allow_nan=False), st.sampled_from([1.0, 2.0, 5.0])), min_size=1, max_size=7
)


@settings(max_examples=150, deadline=None)
@given(values=values_strategy, k=st.integers(1, 4))
def test_exact_kmeans_matches_brute_force(values, k):
    k = min(k, len(values))
    labels = kmeans_1d(torch.tensor(values, dtype=torch.float64), k).tolist()
    assert max(labels) < k
    assert sse(values, labels) == pytest.approx(brute_force_sse(values, k), rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("k", [2, 3])
def test_exact_kmeans_eight_tasks_brute_force(k):
    gen = torch.Generator().manual_seed(k)
    for _ in range(5):
        values = (torch.rand(8, generator=gen, dtype=torch.float64) * 4).tolist()
        labels = kmeans_1d(torch.tensor(values, dtype=torch.float64), k).tolist()
        assert sse(values, labels) == pytest.approx(brute_force_sse(values, k), rel=1e-9, abs=1e-12)


@settings(max_examples=100, deadline=None)
@given(values=values_strategy, k=st.integers(1, 4), seed=st.integers(0, 1000))
def test_exact_kmeans_groups_are_sorted_contiguous_and_permutation_equivariant(values, k, seed):
    k = min(k, len(values))
    x = torch.tensor(values, dtype=torch.float64)
    labels = kmeans_1d(x, k)
    # groups are numbered by increasing value and equal values share a group
    for i in range(len(values)):
        for j in range(len(values)):
            if values[i] < values[j]:
                assert labels[i] <= labels[j]
            if values[i] == values[j]:
                assert labels[i] == labels[j]
    perm = torch.randperm(len(values), generator=torch.Generator().manual_seed(seed))
    assert torch.equal(kmeans_1d(x[perm], k), labels[perm])


def test_kmeans_known_cases():
    x = torch.tensor([0.0, 0.1, 5.0, 5.2, 9.9, 10.0])
    assert kmeans_1d(x, 3).tolist() == [0, 0, 1, 1, 2, 2]
    assert kmeans_1d(x, 1).tolist() == [0] * 6
    assert kmeans_1d(x, 6).tolist() == [0, 1, 2, 3, 4, 5]
    # fewer distinct values than groups: duplicates stay together, fewer groups are used
    assert kmeans_1d(torch.tensor([3.0, 1.0, 3.0, 1.0]), 3).tolist() == [1, 0, 1, 0]
    assert kmeans_1d(torch.tensor([2.0, 2.0, 2.0]), 2).tolist() == [0, 0, 0]


def test_kmeans_is_deterministic_at_scale():
    x = torch.rand(1000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    first = kmeans_1d(x, 5)
    assert torch.equal(first, kmeans_1d(x.clone(), 5))
    assert sorted(set(first.tolist())) == [0, 1, 2, 3, 4]


def test_lloyd_finds_separated_groups_and_is_deterministic():
    x = torch.tensor([0.0, 0.1, 5.0, 5.2, 9.9, 10.0], dtype=torch.float64)
    assert lloyd_1d(x, 3).tolist() == [0, 0, 1, 1, 2, 2]
    assert torch.equal(lloyd_1d(x, 3), lloyd_1d(x, 3))


def test_spectral_groups_separated_values():
    pytest.importorskip("sklearn", reason="pip install 'go4align[sklearn]'")
    x = torch.tensor([0.0, 0.01, 3.0, 3.01], dtype=torch.float64)
    labels = spectral_1d(x, 2).tolist()
    assert labels == [0, 0, 1, 1]


def test_grouping_fixed_partition_and_weights():
    grouping = Grouping(3, 2, clustering=[0, 1, 0], group_weights=[0.8, 0.1])
    weights, labels, omega, sizes = grouping(torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))
    assert weights.tolist() == pytest.approx([0.8, 0.1, 0.8])
    assert labels.tolist() == [0, 1, 0]
    assert sizes.tolist() == [2, 1]


def test_grouping_centroids_are_group_means():
    grouping = Grouping(4, 2)
    weights, labels, omega, sizes = grouping(torch.tensor([1.0, 1.2, 4.0, 4.4], dtype=torch.float64))
    assert omega.tolist() == pytest.approx([1.1, 4.2])
    assert weights.tolist() == pytest.approx([1.1, 1.1, 4.2, 4.2])
    assert sizes.tolist() == [2, 2]


def test_random_options_follow_the_seed_and_state():
    a = Grouping(5, 2, clustering="random", group_weights="random", seed=3)
    b = Grouping(5, 2, clustering="random", group_weights="random", seed=3)
    x = torch.ones(5, dtype=torch.float64)
    for _ in range(3):
        assert torch.equal(a(x).weights, b(x).weights)
    state = a.state_dict()
    expected = a(x).weights
    b.load_state_dict(state)
    assert torch.equal(b(x).weights, expected)


def test_custom_clustering_callable():
    grouping = Grouping(3, 2, clustering=lambda values, k: torch.tensor([1, 0, 1]))
    assert grouping(torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)).labels.tolist() == [1, 0, 1]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_groups": 0}, "num_groups"),
        ({"num_groups": 4}, "num_groups"),
        ({"num_groups": 2.0}, "num_groups"),
        ({"num_groups": 2, "clustering": "kmeans++"}, "clustering"),
        ({"num_groups": 2, "clustering": [0, 1]}, "fixed partition"),
        ({"num_groups": 2, "clustering": [0, 1, 2]}, "fixed partition"),
        ({"num_groups": 2, "group_weights": [1.0]}, "group_weights"),
        ({"num_groups": 2, "group_weights": [1.0, -1.0]}, "group_weights"),
        ({"num_groups": 2, "group_weights": [0.0, 0.0]}, "group_weights"),
        ({"num_groups": 2, "group_weights": "uniform"}, "group_weights"),
        ({"num_groups": 2, "seed": "x"}, "seed"),
    ],
)
def test_grouping_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Grouping(3, **kwargs)


BAD_CLUSTERINGS = [
    3,
    0,
    -1,
    2.5,
    math.nan,
    math.inf,
    True,
    None,
    10**30,
    torch.tensor(0.5),
    np.int64(2),
    object(),
    [1, 2],
    [0.5, 0.3, 0.2],
    [0, 1, 2],
    [0, 1, True],
    "fixed",
    torch.tensor([0.0, 1.0, 1.0]),
]


@pytest.mark.parametrize("clustering", BAD_CLUSTERINGS, ids=repr)
def test_a_bad_clustering_is_named_with_its_value(clustering):
    with pytest.raises(ValueError, match=r"clustering must be one of .*got " + re.escape(repr(clustering))):
        Grouping(3, 2, clustering=clustering)


BAD_GROUP_WEIGHTS = [
    3,
    0,
    2.5,
    math.nan,
    math.inf,
    True,
    10**30,
    torch.tensor(0.5),
    np.int64(2),
    object(),
    "x",
    [1.0, math.nan],
    [1.0, math.inf],
    [1.0, True],
    [1.0, "2"],
    [1.0, 10**400],
    [0.5, 0.3, 0.2],
]


@pytest.mark.parametrize("group_weights", BAD_GROUP_WEIGHTS, ids=repr)
def test_bad_group_weights_are_named_with_their_value(group_weights):
    with pytest.raises(ValueError, match="group_weights .*got " + re.escape(repr(group_weights))):
        Grouping(3, 2, group_weights=group_weights)


@pytest.mark.parametrize("seed", [10**30, -(2**63) - 1, 2**64, 1.0, True, None])
def test_a_seed_the_generator_cannot_take_is_named(seed):
    with pytest.raises(ValueError, match="seed must be an int .*got " + re.escape(repr(seed))):
        Grouping(3, 2, seed=seed)


@pytest.mark.parametrize("seed", [-1, 2**32])
def test_spectral_needs_a_seed_scikit_learn_takes(seed):
    with pytest.raises(ValueError, match=r"seed must be an int in \[0, 2\*\*32\) with clustering='spectral'"):
        Grouping(3, 2, clustering="spectral", seed=seed)
    Grouping(3, 2, clustering="exact", seed=seed)  # any int torch's generator takes


def test_a_fixed_partition_and_group_weights_may_be_tensors_arrays_or_numpy_numbers():
    partitions = [[1, 0, 1], (1, 0, 1), torch.tensor([1, 0, 1]), np.array([1, 0, 1]), [np.int64(1), 0, np.int32(1)]]
    for partition in partitions:
        grouping = Grouping(3, 2, clustering=partition, group_weights=np.array([0.25, 0.75]))
        weights = grouping(torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)).weights
        assert weights.tolist() == [0.75, 0.25, 0.75]
    assert Grouping(3, 2, group_weights=torch.tensor([0.0, 2.0])).group_weights == [0.0, 2.0]


def test_grouped_refuses_the_losses_its_method_refuses_before_either_changes_state():
    """FAMO's weights for [-0.5, 4, 9] are negative (the log of a negative distance): Grouped
    passed them on as group indicators, and the model got negative weights."""
    method = Grouped(FAMO(3))
    losses = torch.tensor([-0.5, 4.0, 9.0], requires_grad=True)
    with pytest.raises(ValueError, match=r"Grouped: loss < 0 at step 0 for task\(s\) \[0\].*FAMO"):
        method.backward(losses)
    assert losses.grad is None and method.step == 0 and not bool(method.method.pending)
    weights = method.backward(torch.tensor([0.0, 4.0, 9.0], requires_grad=True))  # FAMO's eps takes a zero
    assert torch.isfinite(weights).all() and (weights >= 0).all()
    with pytest.raises(ValueError, match=r"loss <= 0 at step 0 for task\(s\) \[0\]"):
        Grouped(FAMO(3, eps=0.0)).backward(torch.tensor([0.0, 4.0, 9.0], requires_grad=True))
    Grouped(UW(3)).backward(torch.tensor([-0.5, 4.0, 9.0], requires_grad=True))  # UW takes any sign


def reference_cost(values, k):
    """Minimum K-means cost into at most ``k`` groups by a plain O(K M^2) dynamic programme over
    the sorted values (numpy, float64): ``cost[j][b]``, the best cost of the first ``b`` values
    in ``j`` groups."""
    x = np.sort(np.asarray(values, dtype=np.float64))
    m = len(x)
    sums, squares = np.concatenate([[0.0], np.cumsum(x)]), np.concatenate([[0.0], np.cumsum(x * x)])
    a, b = np.meshgrid(np.arange(m + 1), np.arange(m + 1))  # segment [a, b) at [b, a]
    with np.errstate(divide="ignore", invalid="ignore"):
        segment = squares[b] - squares[a] - (sums[b] - sums[a]) ** 2 / (b - a)
    segment = np.where(a < b, segment, np.where(a == b, 0.0, np.inf))
    cost = segment[:, 0]
    for _ in range(k - 1):
        cost = np.min(segment + cost[None, :], axis=1)
    return cost[m]


def tied_values(m, seed, ties=8):
    """``m`` values in [0, 1), ``ties`` of them equal, in random order."""
    generator = torch.Generator().manual_seed(seed)
    values = torch.rand(m, generator=generator, dtype=torch.float64)
    values[:ties] = 0.5
    return values[torch.randperm(m, generator=generator)]


@pytest.mark.parametrize("m", [38, 150, 700, 1500])
@pytest.mark.parametrize("k", [3, 4, 6])
def test_exact_kmeans_matches_a_reference_dp_at_every_size(m, k):
    """From a few tasks to well beyond where the whole gain matrix fits in cache: the optimum's
    cost, the tied values in one group, and groups contiguous in sorted order."""
    values = tied_values(m, seed=m + k)
    labels = kmeans_1d(values, k)
    listed = values.tolist()
    assert sse(listed, labels.tolist()) == pytest.approx(reference_cost(listed, k), rel=1e-9, abs=1e-12)
    assert len(set(labels[values == 0.5].tolist())) == 1
    order = torch.argsort(values)
    assert torch.all(torch.diff(labels[order]) >= 0) and labels.max().item() == k - 1


@settings(max_examples=40, deadline=None)
@given(
    values=st.lists(st.integers(0, 30), min_size=2, max_size=600).map(lambda v: [x / 7 for x in v]),
    k=st.integers(2, 7),
)
def test_exact_kmeans_with_many_ties_matches_the_reference_dp(values, k):
    """Values on a coarse grid (many equal values) at up to 600 tasks: optimal cost, equal
    values never split."""
    labels = kmeans_1d(torch.tensor(values, dtype=torch.float64), k).tolist()
    assert sse(values, labels) == pytest.approx(reference_cost(values, k), rel=1e-9, abs=1e-9)
    assert all(len({l for v, l in zip(values, labels) if v == value}) == 1 for value in set(values))


@pytest.mark.parametrize("m, k", [(11, 5), (40, 3), (900, 5)])
@pytest.mark.parametrize("power", [-20, 3, 40])
def test_scaling_the_values_by_a_power_of_two_keeps_the_groups(m, k, power):
    """Every step of the programme scales exactly, so the partition, ties included, is the same."""
    values = tied_values(m, seed=m)
    assert torch.equal(kmeans_1d(values * 2.0**power, k), kmeans_1d(values, k))


@pytest.mark.parametrize("m, k", [(3, 2), (40, 5), (1000, 5), (1000, 2)])
def test_exact_grouping_reads_no_value_to_the_host(m, k):
    """On the meta device (shapes without values) the exact grouping runs through: every shape
    it makes depends on M and K only, so on a GPU it never waits for the device."""
    indicators = torch.empty(m, dtype=torch.float64, device="meta")
    result = Grouping(m, k)(indicators)
    assert result.weights.shape == (m,) and result.weights.device.type == "meta"
    assert result.labels.shape == (m,) and result.group_weights.shape == (k,)
    assert kmeans_1d(indicators, k).shape == (m,)


def test_the_exact_optimum_is_the_best_of_the_authors_random_restarts():
    """The authors' clustering (Lloyd from random data points) reaches a local optimum that
    depends on the draw; the exact partition costs no more than any draw and is what the
    luckiest draws find."""
    values = torch.tensor([0.1, 0.12, 0.5, 0.52, 0.55, 0.9, 1.4, 1.45, 2.0, 2.1, 2.2], dtype=torch.float64)
    exact = kmeans_1d(values, 5)
    draws = [kmeans_random_1d(values, 5, torch.Generator().manual_seed(seed)) for seed in range(30)]
    costs = [sse(values.tolist(), labels.tolist()) for labels in draws]
    assert min(costs) == pytest.approx(sse(values.tolist(), exact.tolist()), rel=1e-12)
    assert all(cost >= min(costs) for cost in costs)
    assert any(torch.equal(labels, exact) for labels in draws)
    assert max(costs) > min(costs) * 1.5  # some draws are stuck in a worse optimum


@pytest.mark.parametrize(
    "m, k, distinct",
    [
        (2, 2, 2),
        (3, 2, 3),
        (10, 2, 10),
        (64, 2, 64),
        (65, 2, 65),
        (100, 2, 100),
        (100, 2, 1),
        (11, 5, 11),
        (40, 5, 40),
        (40, 5, 3),
        (30, 4, 1),
        (300, 3, 300),
        (300, 6, 4),
    ],
)
def test_grouped_weights_are_the_group_means(m, k, distinct):
    """The weights come straight from the optimal partition of the sorted indicators as segment
    means, the labels only when read: every task gets exactly its group's mean indicator, the
    labels are kmeans_1d's, and with fewer distinct values than groups the unused ones come last
    with weight and size 0."""
    gen = torch.Generator().manual_seed(m * k + distinct)
    pool = torch.rand(distinct, generator=gen, dtype=torch.float64)
    values = pool[torch.randint(distinct, (m,), generator=gen)]
    values[: m // 3] = values[0]  # ties
    result = Grouping(m, k)(values)
    labels = kmeans_1d(values, k)
    assert torch.equal(result.labels, labels)
    used = labels.unique().tolist()
    assert used == list(range(min(k, len(values.unique()))))
    for group in used:
        members = labels == group
        assert torch.allclose(result.weights[members], values[members].mean().expand(int(members.sum())), rtol=1e-12)
        assert result.group_weights[group].item() == pytest.approx(values[members].mean().item(), rel=1e-12)
        assert result.group_sizes[group].item() == members.sum().item()
    assert result.group_weights[len(used) :].tolist() == [0.0] * (k - len(used))
    assert result.group_sizes[len(used) :].tolist() == [0.0] * (k - len(used))
    single = Grouping(m, k)(values.float())
    assert single.weights.dtype == torch.float32
    assert torch.allclose(single.weights.double(), result.weights, rtol=1e-6)


@pytest.mark.parametrize("num_groups", [2, 5])
def test_ten_thousand_tasks_group_without_quadratic_tables(num_groups):
    """M = 10,000 (an M^2 gain matrix would be 800 MB): a valid optimum-shaped partition
    (contiguous in sorted order, means increasing)."""
    x = torch.rand(10_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    labels = kmeans_1d(x, num_groups)
    order = torch.argsort(x)
    assert torch.all(torch.diff(labels[order]) >= 0) and labels.max().item() == num_groups - 1
    # equal-width groups are optimal for uniform data up to noise: sizes near M / K
    sizes = torch.bincount(labels).tolist()
    assert all(abs(size - 10_000 / num_groups) < 400 for size in sizes)


WAKE_PROBE = """
import os, sys, time, torch
from go4align.weighting import Grouping

torch.set_num_threads(2)
torch.ones(1 << 22).add_(1)  # starts the second intra-op thread


def worker_time():  # nanoseconds the other threads of this process have run
    tasks = [t for t in os.listdir("/proc/self/task") if int(t) != os.getpid()]
    return sum(int(open(f"/proc/self/task/{t}/schedstat").read().split()[0]) for t in tasks)


def wakes(function):
    function()
    time.sleep(0.05)
    before = worker_time()
    for _ in range(20):
        function()
    return worker_time() > before


matrix = torch.rand(41, 41, dtype=torch.float64)
print("control", wakes(lambda: torch.max(matrix, dim=1)))
for m, k in [(3, 2), (40, 5), (1000, 2), (1000, 5)]:
    grouping, indicators = Grouping(m, k), torch.rand(m, dtype=torch.float64)
    print(m, k, wakes(lambda: grouping(indicators)))
"""


@pytest.mark.slow
def test_the_exact_grouping_stays_on_one_thread():
    """With two torch threads on a busy machine, an operation that enters a parallel region waits
    for a descheduled thread (milliseconds for a microsecond step). Up to 1,000 tasks the exact
    grouping must not wake torch's second thread: measured by that thread's run time, with
    OpenMP told to let it sleep between regions. The control (max with indices, which always
    enters one) shows that the probe sees a wake."""
    if not os.path.exists(f"/proc/{os.getpid()}/schedstat"):
        pytest.skip("needs Linux's per-thread schedstat")
    source = str(Path(go4align.__file__).resolve().parents[1])
    env = dict(os.environ, OMP_WAIT_POLICY="passive", PYTHONPATH=source)
    output = subprocess.run([sys.executable, "-c", WAKE_PROBE], env=env, capture_output=True, text=True, check=True)
    lines = output.stdout.splitlines()
    if lines[0] != "control True":
        pytest.skip(f"this torch build's threads cannot be observed: {lines[0]}")
    assert lines[1:] == ["3 2 False", "40 5 False", "1000 2 False", "1000 5 False"]
