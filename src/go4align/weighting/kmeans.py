"""One-dimensional K-means: the exact optimum that GO4Align's Eq. 3 asks for, and the local
optima its ablations compare with (Lloyd from quantiles, the authors' random-init Lloyd,
spectral clustering).

For a fixed assignment ``G`` the optimal group weights of Eq. 3 are the group means of the
indicators, so Eq. 3 is one-dimensional K-means and the centroid is the group weight. In sorted
order the optimal groups are contiguous runs, so a dynamic programme over the split points finds
the global optimum (:func:`kmeans_1d`): deterministic, no restarts, no empty-cluster loops.

The programme. Sort the indicators, ``x_0 <= ... <= x_{M-1}``, and take the prefix sums of the
centred values, ``P[b] = sum_{i < b} (x_i - mean(x))``. A group ``[a, b)`` (the values
``x_a..x_{b-1}``) has within-group cost ``sum (x_i - mean(x))^2 - gain(a, b)`` with the segment
gain ``gain(a, b) = (P[b] - P[a])^2 / (b - a)``, so an optimal partition maximises the total
gain. With ``best_j[b]`` the largest gain of ``x_0..x_{b-1}`` in ``j`` groups:

* ``best_1[b] = gain(0, b)``;
* each further group is one max-plus step ``best_j[b] = max_{a <= b} best_{j-1}[a] + gain(a, b)``,
  remembering the maximiser ``a`` (the start of group ``j``);
* the last group starts at the ``a`` maximising ``best_{K-1}[a] + gain(a, M)``, and the earlier
  starts are read back through the maximisers.

``K = 2`` needs no step: O(M) after the sort. A step reads the whole ``(M+1)^2`` gain matrix up to
``_DENSE_TASKS`` tasks (a few tensor operations, O(M^2)); beyond, where that matrix spills out of
the cache (M = 1,000) or out of memory (M = 10,000), it is solved by divide and conquer
(:func:`_halve`), O(M log M) time and O(M) memory. Both take the leftmost maximiser, so they
agree. Every shape depends on ``M`` and ``K`` only: no value is read back to the host.

Groups are numbered by increasing mean. Equal values are never split between groups (an
optimum that does not split them always exists), which keeps the result permutation
equivariant; when fewer than ``K`` distinct values exist, fewer groups are used.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import torch
from torch import Tensor

from .base import cast

__all__ = ["kmeans_1d", "kmeans_1d_means", "kmeans_random_1d", "lloyd_1d", "optimal_offsets", "spectral_1d"]

#: Up to this many tasks a max-plus step reads the whole gain matrix; beyond, it is solved by
#: divide and conquer. Measured at K = 5 on the project's 2-core VM: the whole matrix is 5-10x
#: faster up to 400 tasks (1.3 MiB, in cache), as fast at 500 and 3x slower at 1,000.
_DENSE_TASKS = 400


def kmeans_1d(values: Tensor, num_groups: int) -> Tensor:
    """Globally optimal 1-D K-means labels of ``values`` (1-D), groups in increasing order.

    Minimises ``sum_k sum_{m in k} (v_m - mean_k)^2`` over partitions into at most ``num_groups``
    groups, exactly up to float64 rounding (see the module docstring). Equal values share a
    group; ties between partitions go the same way every run.
    """
    sorted_values, order = torch.sort(values.to(torch.float64), stable=True)
    m = sorted_values.shape[0]
    if num_groups >= m:  # every distinct value its own group
        new_value = torch.diff(sorted_values) > 0
        return _unsort(torch.cat([new_value.new_zeros(1, dtype=torch.int64), torch.cumsum(new_value, 0)]), order)
    return _unsort(_offset_labels(optimal_offsets(sorted_values, num_groups), m), order)


def kmeans_1d_means(values: Tensor, num_groups: int) -> tuple[Tensor, Callable[[], Tensor]]:
    """Each value's group mean under the optimal partition of :func:`kmeans_1d` (float64), and
    a function that returns that partition's labels when called: GO4Align's task weights come
    straight from the sorted values as segment means, and the labels cost nothing unless read."""
    m = values.shape[0]
    if num_groups >= m:  # every distinct value its own group: its own mean
        return cast(values, torch.float64), lambda: kmeans_1d(values, num_groups)
    sorted_values, order = torch.sort(cast(values, torch.float64), stable=True)
    offsets = optimal_offsets(sorted_values, num_groups)
    means = _unsort(_segment_means(sorted_values, offsets), order)
    return means, lambda: _unsort(_offset_labels(offsets, m), order)


def optimal_offsets(sorted_values: Tensor, num_groups: int) -> Tensor:
    """The boundaries ``[0, s_2, ..., s_K, M]`` of an optimal partition of ``M`` sorted float64
    values into at most ``num_groups`` groups: group ``k`` is ``[s_k, s_{k+1})``, empty where two
    boundaries are equal."""
    m = sorted_values.shape[0]
    device = sorted_values.device
    constants = _constants(m, device)
    ends = constants["ends"]
    if num_groups == 1:
        return ends
    # Centred first: the gains are then differences of numbers near 0, not of large sums.
    prefix = torch.zeros(m + 1, dtype=torch.float64, device=device)
    torch.cumsum(sorted_values - sorted_values.mean(), 0, out=prefix[1:])
    # A group may start at 0, at M (an empty last group) and where a new value starts: equal
    # values are never split. -inf bars the other boundaries.
    new_value = torch.diff(sorted_values, prepend=constants["minus_inf"], append=constants["inf"]) > 0
    barred = torch.where(new_value, 0.0, -math.inf)
    # best_1[b] = gain(0, b) (P[0] = 0); then one max-plus step per group between the first and the last
    best = prefix.square() * constants["inverse_lengths"]
    maximisers = []
    if num_groups > 2:
        step = _dense_step(prefix, barred) if m <= _DENSE_TASKS else _halving_step(prefix, barred)
        for _ in range(num_groups - 2):
            best, maximiser = step(best)
            maximisers.append(maximiser)
    # the last group [s_K, M): gain(a, M) = (P[M] - P[a])^2 / (M - a)
    last = (prefix[-1] - prefix).square_().mul_(constants["inverse_lengths_to_end"]).add_(best).add_(barred)
    starts = [torch.argmax(last, 0, keepdim=True)]
    for maximiser in reversed(maximisers):  # each group's start: the maximiser at the next one's
        starts.append(maximiser.index_select(0, starts[-1]))
    return torch.cat([ends[:1], *reversed(starts), ends[1:]])


@functools.lru_cache(maxsize=32)
def _constants(m: int, device: torch.device) -> dict[str, Tensor]:
    """Read-only tensors of :func:`optimal_offsets` for ``m`` values (made once, not every step)."""
    lengths = torch.arange(m + 1, dtype=torch.float64, device=device)
    # 1 / (b - a) by segment length; 0 for an empty segment, whose gain is 0
    inverse_lengths = torch.where(lengths > 0, 1 / lengths.clamp_min(1), 0.0)
    return {
        "ends": torch.tensor([0, m], device=device),
        "inf": torch.full((1,), math.inf, dtype=torch.float64, device=device),
        "minus_inf": torch.full((1,), -math.inf, dtype=torch.float64, device=device),
        "boundaries": torch.arange(m + 1, device=device),
        "inverse_lengths": inverse_lengths,
        "inverse_lengths_to_end": inverse_lengths.flip(0),  # of [a, M), by a
    }


def _segment_gains(prefix: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """The gains ``(P[b] - P[a])^2 / (b - a)`` of the segments ``[a, b)``, ``a <= b``."""
    inverse = _constants(prefix.shape[0] - 1, prefix.device)["inverse_lengths"]
    return (prefix[b] - prefix[a]).square() * inverse[b - a]


def _dense_step(prefix: Tensor, barred: Tensor) -> Callable[[Tensor], tuple[Tensor, Tensor]]:
    """The max-plus step over the whole matrix ``gains[b, a]`` of segment gains, -inf where
    ``a > b`` or where no group may start at ``a``; built once for all the steps of a K-means."""
    inverse, barrier = _dense_constants(prefix.shape[0] - 1, prefix.device)
    # the operations of _segment_gains, so that both give the same bits
    gains = (prefix[:, None] - prefix).square_().mul_(inverse).add_(barrier).add_(barred)
    return lambda best: _max_and_argmax(gains + best)


def _max_and_argmax(total: Tensor) -> tuple[Tensor, Tensor]:
    """``torch.max(total, dim=1)`` (the first maximum on ties) as two reductions: max with
    indices enters a parallel region at any size, and with two threads on a busy machine waits
    milliseconds for a descheduled one; these two stay serial below aten's grain size."""
    return total.amax(1), total.argmax(1)


@functools.lru_cache(maxsize=32)
def _dense_constants(m: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """``1 / (b - a)`` (0 where ``a >= b``) and a barrier of -inf where ``a > b``, by ``[b, a]``."""
    boundaries = _constants(m, device)["boundaries"]
    lengths = boundaries[:, None] - boundaries
    inverse = _constants(m, device)["inverse_lengths"][lengths.clamp_min(0)]
    return inverse, torch.zeros_like(inverse).masked_fill_(lengths < 0, -math.inf)


def _halving_step(prefix: Tensor, barred: Tensor) -> Callable[[Tensor], tuple[Tensor, Tensor]]:
    """The max-plus step by divide and conquer (see :func:`_halve`)."""
    return lambda best: _halve(best + barred, prefix)


def _halve(previous: Tensor, prefix: Tensor) -> tuple[Tensor, Tensor]:
    """``best[b] = max_{a <= b} previous[a] + gain(a, b)`` and the leftmost maximiser, by divide
    and conquer. The segment gain is Monge (the K-means cost obeys the quadrangle inequality), so
    the leftmost maximiser never decreases with ``b``: the middle boundary of a range is solved
    over the candidates between the maximisers of the solved boundaries around the range, which
    then bound the two halves. One round solves every range of a recursion level at once over a
    flat list of ``M + ranges`` candidate slots (enough: neighbouring ranges share at most one
    candidate), so a step takes about ``log2 M`` rounds of O(M) work."""
    m = prefix.shape[0] - 1
    device = prefix.device
    # maximiser[b + 1] of boundary b; maximiser[0] = 0 and maximiser[M + 2] = M bound the first range
    maximiser = torch.zeros(m + 3, dtype=torch.int64, device=device)
    maximiser[-1] = m
    best = torch.empty(m + 1, dtype=torch.float64, device=device)
    for middles, before, after, slots in _halving_plan(m, device):
        low = maximiser[before]
        high = torch.minimum(maximiser[after], middles)  # >= low: maximisers never decrease
        ends = torch.cumsum(high - low + 1, 0)  # slots [ends - count, ends) hold low..high
        owner = _count_at_or_before(ends[:-1], slots.shape[0])  # the range of each slot
        target = middles[owner]
        # a = low + (slot - first slot of the owner); slots past the last range are masked
        a = torch.minimum(slots + (high + 1 - ends)[owner], target)
        values = (previous[a] + _segment_gains(prefix, a, target)).masked_fill_(slots >= ends[owner], -math.inf)
        top = torch.full(middles.shape, -math.inf, dtype=torch.float64, device=device)
        top.scatter_reduce_(0, owner, values, "amax")
        candidates = torch.where(values == top[owner], a, m)
        leftmost = torch.full_like(middles, m).scatter_reduce_(0, owner, candidates, "amin")
        best[middles], maximiser[middles + 1] = top, leftmost
    return best, maximiser[1:-1]


@functools.lru_cache(maxsize=8)
def _halving_plan(m: int, device: torch.device) -> list[tuple[Tensor, ...]]:
    """The recursion levels of :func:`_halve` over the boundaries ``0..m``: per level the
    middle boundary of each range ``[lo, hi]``, the indices ``lo`` and ``hi + 2`` of its solved
    neighbours ``lo - 1`` and ``hi + 1`` in the maximiser array (shifted by one), and the slots."""
    levels, ranges = [], [(0, m)]
    while ranges:
        middles = [(lo + hi) // 2 for lo, hi in ranges]
        levels.append(
            (
                torch.tensor(middles, device=device),
                torch.tensor([lo for lo, _ in ranges], device=device),
                torch.tensor([hi + 2 for _, hi in ranges], device=device),
                torch.arange(m + 1 + len(ranges), device=device),
            )
        )
        halves = [((lo, mid - 1), (mid + 1, hi)) for (lo, hi), mid in zip(ranges, middles)]
        ranges = [(lo, hi) for pair in halves for lo, hi in pair if lo <= hi]
    return levels


def _segment_means(sorted_values: Tensor, offsets: Tensor) -> Tensor:
    """Each sorted value's group mean under the partition of ``offsets`` (``unsafe`` skips
    segment_reduce's checks, which read the offsets back to the host; they hold by construction)."""
    m = sorted_values.shape[0]
    means = torch.segment_reduce(sorted_values, "mean", offsets=offsets, unsafe=True, initial=0.0)
    # the group of position p: how many boundaries between the first and the last are <= p
    # (not repeat_interleave, which enters a parallel region: see _count_at_or_before)
    return means[_count_at_or_before(offsets[1:-1], m + 1)[:m]]


def _count_at_or_before(points: Tensor, size: int) -> Tensor:
    """For each ``i`` in ``[0, size)``, how many of ``points`` (ints in ``[0, size)``) are ``<= i``.
    This is ``searchsorted(sorted points, arange(size), right=True)``, but searchsorted splits
    its queries between threads from 400 on, and with two threads on a busy machine then waits
    milliseconds for a descheduled one; these three operations stay on one thread."""
    marks = torch.zeros(size, dtype=torch.int64, device=points.device)
    return torch.cumsum(marks.index_add_(0, points, torch.ones_like(points)), 0)


def _offset_labels(offsets: Tensor, m: int) -> Tensor:
    """Labels of the sorted positions under the partition of ``offsets``: the number of distinct
    group starts in ``[1, position]``, so that unused groups (empty, starting where another
    does, at 0 or at ``m``) take no label and the used ones are numbered ``0, 1, ...``."""
    starts = torch.zeros(m + 1, dtype=torch.bool, device=offsets.device)
    starts[offsets[1:-1]] = True
    labels = torch.zeros(m, dtype=torch.int64, device=offsets.device)
    torch.cumsum(starts[1:m], 0, out=labels[1:])
    return labels


def _unsort(sorted_result: Tensor, order: Tensor) -> Tensor:
    """Undo ``torch.sort``: ``order`` is a permutation, so every entry is written once."""
    return sorted_result.scatter(0, order, sorted_result)


def lloyd_1d(values: Tensor, num_groups: int, iterations: int = 30) -> Tensor:
    """Lloyd's K-means in 1-D with deterministic quantile initialisation and a fixed iteration
    count (no host synchronisation); a local optimum, kept for the Table 5 ablation."""
    m = values.shape[0]
    k = min(num_groups, m)
    x = values.to(torch.float64)
    sorted_values, _ = torch.sort(x)
    ranks = torch.div((2 * torch.arange(k, device=x.device) + 1) * m, 2 * k, rounding_mode="floor")
    centroids = sorted_values[ranks]
    for _ in range(iterations):
        labels = (x[:, None] - centroids[None, :]).abs().argmin(dim=1)
        sums = torch.zeros_like(centroids).index_add_(0, labels, x)
        counts = torch.zeros_like(centroids).index_add_(0, labels, torch.ones_like(x))
        centroids = torch.where(counts > 0, sums / counts.clamp_min(1), centroids)
    labels = (x[:, None] - centroids[None, :]).abs().argmin(dim=1)
    return _relabel_by_mean(x, labels, k)


#: kmeans_pytorch's stopping rule: the squared sum of the centres' shifts below this.
_RANDOM_INIT_TOLERANCE = 1e-4
#: kmeans_pytorch has no cap (and loops for ever on some inputs); ours stops here.
_RANDOM_INIT_ITERATIONS = 300


def kmeans_random_1d(values: Tensor, num_groups: int, generator: torch.Generator) -> Tensor:
    """Lloyd's K-means from random initial centres, as the authors' code runs it (the package
    kmeans_pytorch): a local optimum that depends on the draw. Reimplemented from its behaviour:
    the values in float32; initial centres are ``K`` distinct data points drawn uniformly (from
    ``generator``, so a seed reproduces the run, rather than numpy's global generator); each
    iteration assigns every value to its nearest centre (first on ties) and moves each centre to
    its members' mean, a centre left without members to a random data point; it stops when the
    squared sum of the centres' shifts is below ``1e-4`` (absolute, as there) or after
    ``_RANDOM_INIT_ITERATIONS`` iterations. Labels of the last assignment, numbered by increasing
    group mean; host synchronisation every iteration, so for ablations only."""
    m = values.shape[0]
    k = min(num_groups, m)
    x = values.detach().to("cpu", torch.float32)
    centres = x[torch.randperm(m, generator=generator)[:k]]
    for _ in range(_RANDOM_INIT_ITERATIONS):
        labels = (x[:, None] - centres[None, :]).square().argmin(1)
        sums = torch.zeros(k).index_add_(0, labels, x)
        counts = torch.zeros(k).index_add_(0, labels, torch.ones_like(x))
        empty = counts == 0
        refill = x[torch.randint(m, (k,), generator=generator)]  # drawn every iteration: one law
        moved = torch.where(empty, refill, sums / counts.clamp_min(1))
        shift = float((moved - centres).abs().sum()) ** 2
        centres = moved
        if shift < _RANDOM_INIT_TOLERANCE:
            break
    return _relabel_by_mean(values.to(torch.float64), labels.to(values.device), k)


def spectral_1d(values: Tensor, num_groups: int, random_state: int = 0) -> Tensor:
    """scikit-learn's SpectralClustering with ``assign_labels='cluster_qr'`` (Table 5), on the CPU.

    Needs the ``sklearn`` extra; costs a device-to-host copy and milliseconds per step.
    """
    try:
        from sklearn.cluster import SpectralClustering
    except ImportError as error:  # pragma: no cover - exercised only without the extra
        raise ImportError("clustering='spectral' needs scikit-learn: pip install 'go4align[sklearn]'") from error
    m = values.shape[0]
    k = min(num_groups, m)
    if k == 1:
        return torch.zeros(m, dtype=torch.int64, device=values.device)
    x = values.detach().to("cpu", torch.float64).numpy().reshape(-1, 1)
    model = SpectralClustering(n_clusters=k, assign_labels="cluster_qr", random_state=random_state)
    labels = torch.as_tensor(model.fit_predict(x), dtype=torch.int64, device=values.device)
    return _relabel_by_mean(values.to(torch.float64), labels, k)


def _relabel_by_mean(x: Tensor, labels: Tensor, k: int) -> Tensor:
    """Renumber groups by increasing mean; empty groups go last."""
    sums = torch.zeros(k, dtype=x.dtype, device=x.device).index_add_(0, labels, x)
    counts = torch.zeros(k, dtype=x.dtype, device=x.device).index_add_(0, labels, torch.ones_like(x))
    means = torch.where(counts > 0, sums / counts.clamp_min(1), torch.full_like(sums, float("inf")))
    rank = torch.empty_like(labels[:k]).scatter_(0, torch.argsort(means, stable=True), torch.arange(k, device=x.device))
    return rank[labels]
