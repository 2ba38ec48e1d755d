import itertools
import math
import re

import numpy as np
import pytest
import torch
from helpers.weighting import sse
from hypothesis import given, settings
from hypothesis import strategies as st

from go4align.weighting import FAMO, UW, Grouped, Grouping, kmeans_1d, lloyd_1d, spectral_1d


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
    """Minimum K-means cost by a plain O(K M^2) dynamic programme in Python floats."""
    x = sorted(values)
    m = len(x)

    def cost(a, b):  # within-group cost of x[a:b]
        segment = x[a:b]
        mean = sum(segment) / len(segment)
        return sum((v - mean) ** 2 for v in segment)

    best = [cost(0, b) if b else 0.0 for b in range(m + 1)]
    for _ in range(k - 1):
        best = [min([best[b]] + [best[a] + cost(a, b) for a in range(1, b)]) for b in range(m + 1)]
    return best[m]


@pytest.mark.parametrize("block_entries", [None, 1 << 6])
@pytest.mark.parametrize("k", [3, 4, 6])
def test_exact_kmeans_matches_a_reference_dp_whole_and_in_row_blocks(monkeypatch, block_entries, k):
    """The DP of K >= 3 at moderate M, with many ties, in one block and in row blocks of 16
    rows (the large-M code path): the optimum's cost, and identical labels either way."""
    from go4align.weighting import grouping

    gen = torch.Generator().manual_seed(k)
    values = torch.cat([torch.rand(30, generator=gen, dtype=torch.float64), torch.full((8,), 0.5, dtype=torch.float64)])
    values = values[torch.randperm(len(values), generator=gen)]
    whole = kmeans_1d(values, k)
    if block_entries is not None:
        monkeypatch.setattr(grouping, "_WHOLE_ENTRIES", 0)
        monkeypatch.setattr(grouping, "_BLOCK_ENTRIES", block_entries)
        grouping._dp_tables.cache_clear()
        assert len(grouping._dp_tables(len(values), values.device, 0)["blocks"]) > 1
        labels = kmeans_1d(values, k)
        grouping._dp_tables.cache_clear()
        assert torch.equal(labels, whole)
    listed = values.tolist()
    assert sse(listed, whole.tolist()) == pytest.approx(reference_cost(listed, k), rel=1e-9, abs=1e-12)
    assert len(set(whole[values == 0.5].tolist())) == 1  # the tied values share a group


def test_small_problems_enumerate_partitions_and_agree_with_the_dp(monkeypatch):
    """K >= 3 at small M takes the optimum over every partition (tables of all of them); it must
    find the DP's partition, with equal values kept together, and in tables of bounded size."""
    from go4align.weighting import grouping

    assert grouping._tabled(11, 5) and grouping._tabled(3, 2) and grouping._tabled(64, 2)
    assert not grouping._tabled(40, 5) and not grouping._tabled(65, 2) and not grouping._tabled(5, 5)
    gen = torch.Generator().manual_seed(0)
    cases = [(m, k) for m in range(4, 14) for k in range(3, min(m, 7)) if grouping._tabled(m, k)]
    assert (11, 5) in cases and len(cases) > 20
    for m, k in cases:
        values = torch.rand(m, generator=gen, dtype=torch.float64)
        values[: m // 3] = values[0]  # a run of equal values
        if m % 2:
            values[m // 2 :] = torch.round(values[m // 2 :] * 4) / 4  # more ties
        enumerated = kmeans_1d(values, k)
        with monkeypatch.context() as patch:
            patch.setattr(grouping, "_PARTITION_STEP_ENTRIES", 0)
            assert not grouping._tabled(m, k)
            dp = kmeans_1d(values, k)
        listed = values.tolist()
        assert sse(listed, enumerated.tolist()) == pytest.approx(sse(listed, dp.tolist()), rel=1e-12, abs=1e-15)
        assert torch.equal(enumerated, dp), (m, k, listed)
        for value in values.unique():
            assert len(set(enumerated[values == value].tolist())) == 1


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
    """The weights come straight from the optimal partition of the sorted indicators (tables of
    every split or partition at small M; segment means of the closed form or of the DP beyond),
    the labels only when read: every task gets exactly its group's mean indicator, the labels
    are kmeans_1d's, and with fewer distinct values than groups the unused ones come last with
    weight and size 0."""
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


@settings(max_examples=80, deadline=None)
@given(
    values=st.lists(st.integers(0, 30), min_size=4, max_size=80).map(lambda v: [x / 7 for x in v]),
    k=st.integers(3, 7),
)
def test_divide_and_conquer_dp_matches_the_whole_matrix_dp(values, k):
    """The DP beyond _LARGE_TASKS (divide and conquer, no M^2 tables) is as good as the DP over
    the whole gain matrix, ties (repeated values) included; with distinct random values, where
    the optimum is unique, it is the same partition."""
    import go4align.weighting.grouping as grouping

    x = torch.tensor(values, dtype=torch.float64)
    k = min(k, len(values) - 1)
    expected = kmeans_1d(x, k)
    saved = grouping._LARGE_TASKS
    grouping._LARGE_TASKS = 1
    try:
        got = kmeans_1d(x, k)
    finally:
        grouping._LARGE_TASKS = saved
    assert abs(sse(values, got.tolist()) - sse(values, expected.tolist())) <= 1e-12 * (
        1 + sse(values, [0] * len(values))
    )
    # equally good partitions may differ in the last bits of their gains: compare labels on
    # continuous values only
    x = torch.rand(len(values), generator=torch.Generator().manual_seed(len(values)), dtype=torch.float64)
    expected = kmeans_1d(x, k)
    grouping._LARGE_TASKS = 1
    try:
        got = kmeans_1d(x, k)
    finally:
        grouping._LARGE_TASKS = saved
    assert torch.equal(got, expected)


@pytest.mark.parametrize("num_groups", [2, 5])
def test_ten_thousand_tasks_group_without_quadratic_tables(num_groups):
    """M = 10,000: the optimum of K = 2 from prefix sums and of K = 5 by divide and conquer; the
    result is a valid optimum-shaped partition (contiguous in sorted order, means increasing)."""
    x = torch.rand(10_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    labels = kmeans_1d(x, num_groups)
    order = torch.argsort(x)
    assert torch.all(torch.diff(labels[order]) >= 0) and labels.max().item() == num_groups - 1
    # equal-width groups are optimal for uniform data up to noise: sizes near M / K
    sizes = torch.bincount(labels).tolist()
    assert all(abs(size - 10_000 / num_groups) < 400 for size in sizes)
