"""The 1-D K-means of weighting/kmeans.py: the exact optimum against brute force and a plain
reference DP, its invariances, and the local optima of the ablations."""

import itertools

import numpy as np
import pytest
import torch
from helpers.weighting import sse
from hypothesis import given, settings
from hypothesis import strategies as st

from go4align.weighting import kmeans_1d, kmeans_random_1d, lloyd_1d, spectral_1d
from go4align.weighting.kmeans import kmeans_1d_means


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


@settings(max_examples=100, deadline=None)
@given(values=values_strategy, k=st.integers(1, 8))
def test_the_means_are_each_values_group_mean_under_the_optimal_partition(values, k):
    """kmeans_1d_means gives every value the mean of its group in kmeans_1d's partition (any K,
    beyond M too), and its labels, read later, are kmeans_1d's."""
    x = torch.tensor(values, dtype=torch.float64)
    means, labels = kmeans_1d_means(x, k)
    expected = kmeans_1d(x, k)
    assert torch.equal(labels(), expected)
    for group in expected.unique():
        members = expected == group
        torch.testing.assert_close(means[members], x[members].mean().expand(int(members.sum())), rtol=1e-12, atol=1e-12)
