"""Dynamical group assignment (GO4Align Eq. 3): group tasks by their indicators.

For a fixed assignment ``G`` the optimal group weights of Eq. 3 are the group means of the
indicators, so Eq. 3 is one-dimensional K-means and the centroid is the group weight. In sorted
order the optimal groups are contiguous runs, so :func:`kmeans_1d` finds the global optimum over
split points: deterministic, no restarts, no empty-cluster loops.

Complexity per step (M tasks, K groups; after an O(M log M) sort):

* K = 2: up to 64 tasks from precomputed tables (one product); beyond, the split from prefix
  sums, O(M) (M = 10,000, one CPU thread: first step 5 ms, then 2 ms; up to 20 ms under load).
* K >= 3, few partitions (e.g. M = 11, K = 5: 386): every partition from precomputed tables.
* K >= 3 up to 1,024 tasks: the DP over the (M+1)^2 gain matrix, O(K M^2) time and O(M^2)
  memory (built on the first step: up to about 2 s at M = 1,000 on a busy 2-core machine).
* K >= 3 beyond 1,024 tasks: the DP by divide and conquer (the K-means segment cost is Monge),
  O(K M log M) time, O(M) memory (M = 10,000, K = 5, one CPU thread: first step 42 ms, then
  33 ms; about 0.26 s under heavy load; the M^2 tables took 51 s on the first step).

All paths are tensor operations on the indicators' device; all but the divide and conquer (which
reads a count per round, about log2 M rounds per group) run without host synchronisation.

Groups are numbered by increasing group weight. Equal indicators are never split between groups
(an optimum that does not split them always exists), which keeps the result permutation
equivariant; when fewer than ``K`` distinct indicators exist, fewer groups are used and the
unused groups have weight 0 and size 0.
"""

from __future__ import annotations

import functools
import itertools
import math
import numbers
import threading
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from ._checks import check_seed
from .base import cast, check_choice

__all__ = [
    "callable_name",
    "kmeans_1d",
    "kmeans_random_1d",
    "lloyd_1d",
    "spectral_1d",
    "Grouping",
    "GroupAssignment",
    "CLUSTERINGS",
]

CLUSTERINGS = ("exact", "kmeans-random", "lloyd", "spectral", "random")


#: K = 2 takes the closed form through per-split averaging matrices up to this many tasks
#: (their M^3 float64 entries: 2 MiB at 64); larger M labels the tasks and averages by group.
_TABLE_TASKS = 64
#: K >= 3 enumerates every partition into at most K contiguous groups while a step reads at most
#: this many float64 entries of their tables (M = 11, K = 5: 386 partitions, 25k entries), and
#: their averaging matrices hold at most ``_PARTITION_TABLE_ENTRIES``; the DP beyond.
_PARTITION_STEP_ENTRIES = 1 << 16
_PARTITION_TABLE_ENTRIES = 1 << 19
#: The DP of K >= 3 takes its (M+1)^2 gain matrix whole up to this many entries (M <= 361: few
#: operations matter most); beyond, row blocks of about ``_BLOCK_ENTRIES`` float64 entries per
#: CPU thread (1 MiB each, in cache; at least two blocks), each only up to the diagonal: segments
#: [a, b) need a <= b. Measured at M = 1000, K = 5: with 2 threads, blocks of 2^18 entries ~20%
#: faster than 2^17; with one thread, no faster (within this machine's +-15% noise).
_WHOLE_ENTRIES = 1 << 17
_BLOCK_ENTRIES = 1 << 17
#: Beyond this many tasks no table of M^2 entries is built (at M = 10,000 they took 12 s (K = 2)
#: and 51 s (K = 5) on the first step, and GBs): K = 2 takes its split from prefix sums, O(M);
#: K >= 3 the DP by divide and conquer, O(K M log M) (see :func:`_dc_layer`).
_LARGE_TASKS = 1024


def _start_tests(rows: int, m: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """``steps @ sorted > floor`` for ``m`` sorted float64 values: row ``s`` in ``1..m-1`` is
    true where a new value starts at sorted position ``s`` (``x[s] - x[s-1] > 0``, exact in
    float64); every other row (``0``, and ``m`` when ``rows = m + 1``) is always true."""
    positions = torch.arange(1, m, device=device)
    steps = torch.zeros(rows, m, dtype=torch.float64, device=device)
    steps[positions, positions] = 1.0
    steps[positions, positions - 1] = -1.0
    floor = torch.full((rows,), -1.0, dtype=torch.float64, device=device)
    floor[1:m] = 0.0
    return steps, floor


def _averaging_rows(labels: Tensor) -> Tensor:
    """Row ``p`` (of ``m * m`` entries) maps ``m`` sorted values to the mean of each position's
    group under partition ``p``, given as the group of each sorted position, ``labels[p]``."""
    same = (labels[:, :, None] == labels[:, None, :]).to(torch.float64)
    return (same / same.sum(2, keepdim=True)).reshape(labels.shape[0], -1)


@functools.lru_cache(maxsize=32)
def _two_group_tables(m: int, device: torch.device) -> dict[str, Tensor]:
    """Read-only constants of K = 2 for ``m >= 2`` sorted values. Split ``s = 0`` is one group;
    split ``s >= 1`` starts the second group at sorted position ``s``. Their gain (the
    between-group sum of squares, ``P_s^2 (1/s + 1/(m - s))`` for the centred prefix sum ``P``)
    is the square of ``roots @ sorted``; ``steps @ sorted > floor`` says where a split is allowed
    (a new value starts there; ``s = 0`` always); ``averages`` row ``s`` is the ``m x m`` matrix
    that maps the sorted values to their group means (``m^3`` entries, up to ``_TABLE_TASKS``)."""
    start = torch.arange(m, device=device)
    start[0] = m  # s = 0: no second group
    a = start.to(torch.float64)
    positions = torch.arange(m, device=device)
    first = positions[None, :] < start[:, None]  # [split, position]
    second_size = m - a
    coefficient = torch.sqrt(1 / a.clamp_min(1) + 1 / second_size.clamp_min(1))
    roots = (first.to(torch.float64) - a[:, None] / m) * coefficient[:, None]
    roots[0] = 0  # one group: gain exactly 0
    steps, floor = _start_tests(m, m, device)
    tables = {"roots": roots, "steps": steps, "floor": floor, "start": start}
    if m <= _TABLE_TASKS:
        tables["labels"] = (~first).long()
        tables["averages"] = _averaging_rows(tables["labels"])
    return tables


def _two_group_split(sorted_values: Tensor, tables: dict[str, Tensor]) -> Tensor:
    """The optimal split ``s`` (shape ``[1]``, see :func:`_two_group_tables`) of sorted float64
    values into at most two groups."""
    # The centred prefix sums of sorted values are <= 0, so the largest gain is the most negative
    # root: no squaring needed.
    roots = torch.mv(tables["roots"], sorted_values)
    # Equal values are never split: a disallowed split gets 0, which never beats an allowed one
    # (allowed splits of distinct values are < 0; s = 0, one group, comes first for ties).
    roots.mul_(torch.gt(torch.mv(tables["steps"], sorted_values), tables["floor"]))
    return roots.argmin(0, keepdim=True)  # the first minimum: ties go to the earlier split


def _partition_count(m: int, k: int) -> int:
    """Partitions of ``m`` sorted values into at most ``k`` contiguous non-empty groups."""
    return sum(math.comb(m - 1, splits) for splits in range(min(k, m)))


def _tabled(m: int, k: int) -> bool:
    """Whether the optimum of ``m`` values in ``k`` groups comes from tables of every split
    (K = 2) or of every partition (small ``m`` and ``k``), with the group means in one step."""
    if k == 2:
        return 2 <= m <= _TABLE_TASKS
    if not 3 <= k < m:
        return False
    count = _partition_count(m, k)
    return count * m * (k + 1) <= _PARTITION_STEP_ENTRIES and count * m * m <= _PARTITION_TABLE_ENTRIES


@functools.lru_cache(maxsize=8)
def _partition_tables(m: int, k: int, device: torch.device) -> dict[str, Tensor]:
    """Read-only constants of K >= 3 by enumeration, for ``m`` sorted values: every partition
    into at most ``k`` contiguous groups, one group first, then by number of groups and split
    points, so that exact ties go to fewer groups and earlier splits. ``roots[p] @ sorted`` (``k``
    entries) has as squared norm partition ``p``'s between-group sum of squares (the row of
    group ``g`` is ``(1_g - n_g / m) / sqrt(n_g)``; zero for unused groups, and for the one group).
    ``incidence`` marks each partition's split points; ``negated_steps @ sorted`` is minus the gap
    before each sorted position (0 at 0, which no partition splits). ``labels`` and ``averages``:
    the group of each position and the averaging rows of :func:`_averaging_rows`."""
    rows = []
    for count in range(min(k, m)):
        for splits in itertools.combinations(range(1, m), count):
            row = [0] * m
            for split in splits:
                row[split:] = [label + 1 for label in row[split:]]
            rows.append(row)
    labels = torch.tensor(rows, device=device)
    groups = torch.arange(k, device=device)[None, :, None]
    members = (labels[:, None, :] == groups).to(torch.float64)  # [partition, group, position]
    sizes = members.sum(2, keepdim=True)
    roots = (members - sizes / m) / sizes.clamp_min(1).sqrt()
    incidence = torch.zeros(labels.shape, dtype=torch.float64, device=device)
    incidence[:, 1:] = labels[:, 1:] != labels[:, :-1]
    steps, _ = _start_tests(m, m, device)
    return {
        "roots": roots,
        "incidence": incidence,
        "negated_steps": -steps,
        "one": torch.ones((), dtype=torch.float64, device=device),
        "labels": labels,
        "averages": _averaging_rows(labels),
    }


#: Subtracted from the gain of a partition for each split inside a run of equal values: far below
#: any gain, finite even times ``m - 1`` splits, and exactly nothing for a partition without one.
_EXCLUDED = 1e300


def _partition_choice(sorted_values: Tensor, tables: dict[str, Tensor]) -> Tensor:
    """Index (shape ``[1]``) of an optimal partition of :func:`_partition_tables`."""
    # each partition's between-group sum of squares, in two operations (not its norm: the square
    # root would merge gains one ulp apart into ties)
    projections = torch.matmul(tables["roots"], sorted_values)
    gains = torch.linalg.vecdot(projections, projections, dim=1)
    # Equal values are never split: each split inside a run of equal values (gap exactly 0, exact
    # in float64) costs a partition _EXCLUDED, so it never beats the one group (gain 0) listed first.
    ties = torch.heaviside(torch.mv(tables["negated_steps"], sorted_values), tables["one"])
    gains = torch.addmv(gains, tables["incidence"], ties, alpha=-_EXCLUDED)
    return gains.argmax(0, keepdim=True)  # the first maximum


def _chosen_labels(tables: dict[str, Tensor], choice: Tensor) -> Tensor:
    """The labels of the sorted positions under partition ``choice`` of the tables."""
    return tables["labels"].index_select(0, choice).view(-1)


def _tabled_choice(sorted_values: Tensor, k: int) -> tuple[dict[str, Tensor], Tensor]:
    """The tables of ``m = len(sorted_values)`` and ``k`` (see :func:`_tabled`) and the index of
    an optimal partition in them."""
    m = sorted_values.shape[0]
    if k == 2:
        tables = _two_group_tables(m, sorted_values.device)
        return tables, _two_group_split(sorted_values, tables)
    tables = _partition_tables(m, k, sorted_values.device)
    return tables, _partition_choice(sorted_values, tables)


@functools.lru_cache(maxsize=16)
def _dp_tables(m: int, device: torch.device, thread: int, threads: int = 1) -> dict:
    """Constants and work space of the DP of K >= 3 (one set per thread, since the work space is
    written; blocks sized for ``threads`` CPU threads). Indices ``a, b`` run over the ``m + 1``
    boundaries; ``gain[b, a]`` is the gain of the segment ``[a, b)``, ``-inf`` where ``a > b``
    (filled once above the diagonal). The rows are processed whole or in blocks, each only up to
    its diagonal."""
    f64 = dict(dtype=torch.float64, device=device)
    boundaries = torch.arange(m + 1, **f64)
    length = boundaries[:, None] - boundaries[None, :]  # [b, a]
    impossible = torch.where(length < 0, float("-inf"), 0.0).to(torch.float64)
    if (m + 1) ** 2 <= _WHOLE_ENTRIES:
        rows = m + 1
    else:  # at least two blocks: the square up to the diagonal is half the work
        rows = max(16, min(_BLOCK_ENTRIES * threads // (m + 1), (m + 2) // 2))
    positions = torch.arange(m, device=device)
    # P = centring @ sorted: P[b] = sum_{i < b} (x_i - mean), P[0] = 0
    centring = (positions[None, :] < torch.arange(m + 1, device=device)[:, None]).to(torch.float64)
    centring -= boundaries[:, None] / m
    steps, floor = _start_tests(m + 1, m, device)  # allowed group starts: 0, m, and new values
    gain = impossible.clone()
    # P and the start tests from one matrix-vector product (whole matrices)
    prefix_and_tests = torch.zeros(2 * (m + 1), **f64)
    prefix = prefix_and_tests[: m + 1]
    inverse = torch.where(length > 0, 1 / length.clamp_min(1), torch.zeros_like(length))
    total = torch.empty_like(length)
    blocked = torch.zeros(m + 1, **f64)
    blocks = [(start, min(start + rows, m + 1)) for start in range(0, m + 1, rows)]
    return {
        "inverse": inverse,
        "impossible": impossible,
        "blocks": blocks,
        "block_views": [
            (
                gain[start:stop, :stop],
                prefix[start:stop, None],
                prefix[None, :stop],
                inverse[start:stop, :stop],
                gain[start:stop, start:stop],
                impossible[start:stop, start:stop],
                total[start:stop, :stop],
                gain[start:stop, 0],
                blocked[start:stop],
            )
            for start, stop in blocks
        ],
        "centring_and_steps": torch.cat([centring, steps]),
        "prefix_and_tests": prefix_and_tests,
        "tests": prefix_and_tests[m + 1 :],
        "floor": floor,
        "zero": torch.zeros((), **f64),
        "minus_inf": torch.full((), float("-inf"), **f64),
        "gain": gain,
        "first_segment": gain[:, 0],
        "last_segment": gain[m],
        "total": total,
        "blocked": blocked,
        "prefix": prefix,
        "prefix_column": prefix[:, None],
        "prefix_row": prefix[None, :],
    }


def _prefix_and_allowed(sorted_values: Tensor) -> tuple[Tensor, Tensor]:
    """The centred prefix sums ``P[b] = sum_{i < b} (x_i - mean)`` (``m + 1`` entries) of sorted
    float64 values, and where a group may start: 0, ``m``, and wherever a new value starts."""
    m = sorted_values.shape[0]
    prefix = torch.zeros(m + 1, dtype=torch.float64, device=sorted_values.device)
    torch.cumsum(sorted_values - sorted_values.mean(), 0, out=prefix[1:])
    allowed = torch.ones(m + 1, dtype=torch.bool, device=sorted_values.device)
    torch.gt(sorted_values[1:], sorted_values[:-1], out=allowed[1:m])
    return prefix, allowed


def _segment_gains(prefix: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """Gains ``(P[b] - P[a])^2 / (b - a)`` of the segments ``[a, b)``, 0 for empty ones."""
    length = (b - a).to(torch.float64)
    return torch.where(length > 0, (prefix[b] - prefix[a]).square() / length.clamp_min(1), 0.0)


def _two_group_start(sorted_values: Tensor) -> Tensor:
    """The start (shape ``[1]``; ``m`` for one group) of the second group of an optimal split of
    sorted values, from prefix sums in O(M): the gain of a split at ``s`` is
    ``P_s^2 (1/s + 1/(m - s))``; ties go to one group, then to the earlier split."""
    m = sorted_values.shape[0]
    prefix, allowed = _prefix_and_allowed(sorted_values)
    splits = torch.arange(1, m, device=sorted_values.device, dtype=torch.float64)
    gains = torch.zeros(m, dtype=torch.float64, device=sorted_values.device)
    gains[1:] = prefix[1:m].square() * (1 / splits + 1 / (m - splits))
    gains[1:].masked_fill_(~allowed[1:m], -1.0)  # equal values are never split
    best = gains.argmax(0, keepdim=True)  # the first maximum; s = 0 (gain 0) comes first
    return torch.where(best > 0, best, m)


def _dc_layer(previous: Tensor, prefix: Tensor) -> tuple[Tensor, Tensor]:
    """One layer of the DP by divide and conquer: ``best[b] = max_{a <= b} previous[a] +
    gain(a, b)`` for every boundary ``b``, and the leftmost maximiser ``a``. The K-means segment
    cost is Monge, so the leftmost maximiser is non-decreasing in ``b``: the middle ``b`` of a range
    is solved over its range of candidates, which then splits for the two halves. All ranges of one
    level are solved together (one pass over O(M) candidates), so a layer is O(M log M) in about
    ``log2 M`` rounds of a few tensor operations (each reads its candidate count to the host)."""
    device = prefix.device
    m = prefix.shape[0] - 1
    best = torch.empty(m + 1, dtype=torch.float64, device=device)
    argument = torch.empty(m + 1, dtype=torch.int64, device=device)
    low_b = torch.zeros(1, dtype=torch.int64, device=device)
    high_b, low_a, high_a = low_b + m, low_b.clone(), low_b + m
    while low_b.numel():
        middle = torch.div(low_b + high_b, 2, rounding_mode="floor")
        counts = torch.minimum(high_a, middle) - low_a + 1  # >= 1: low_a <= middle by construction
        ranges = torch.arange(counts.numel(), device=device)
        owner = torch.repeat_interleave(ranges, counts)
        first = torch.cumsum(counts, 0) - counts
        a = low_a[owner] + torch.arange(owner.numel(), device=device) - first[owner]
        values = previous[a] + _segment_gains(prefix, a, middle[owner])
        top = torch.full_like(middle, 0, dtype=torch.float64).scatter_reduce_(
            0, owner, values, "amax", include_self=False
        )
        leftmost = torch.where(values == top[owner], a, m + 1)
        choice = torch.full_like(middle, m + 1).scatter_reduce_(0, owner, leftmost, "amin")
        best[middle], argument[middle] = top, choice
        left, right = middle > low_b, middle < high_b
        low_b, high_b = torch.cat([low_b[left], middle[right] + 1]), torch.cat([middle[left] - 1, high_b[right]])
        low_a, high_a = torch.cat([low_a[left], choice[right]]), torch.cat([choice[left], high_a[right]])
    return best, argument


def _large_starts(sorted_values: Tensor, num_groups: int) -> list[Tensor]:
    """As :func:`_optimal_starts` for many values and ``K >= 3``: ``K - 2`` divide-and-conquer
    layers (:func:`_dc_layer`) over the best gains of ``[0, b)`` in ``j`` groups, with -inf where
    no group may start, then the split points back from the last group's start."""
    m = sorted_values.shape[0]
    prefix, allowed = _prefix_and_allowed(sorted_values)
    boundaries = torch.arange(m + 1, device=sorted_values.device)
    blocked = torch.where(allowed, 0.0, float("-inf")).to(torch.float64)
    best = _segment_gains(prefix, torch.zeros_like(boundaries), boundaries)  # [0, b) as one group
    arguments = []
    for _ in range(num_groups - 2):
        best, argument = _dc_layer(best + blocked, prefix)
        arguments.append(argument)
    last = best + blocked + _segment_gains(prefix, boundaries, torch.full_like(boundaries, m))
    starts = [last.argmax(0, keepdim=True)]
    for argument in reversed(arguments):
        starts.append(argument.index_select(0, starts[-1]))
    return starts[::-1]


def _optimal_starts(sorted_values: Tensor, num_groups: int) -> list[Tensor]:
    """Starts (one-element tensors, in increasing order) of groups 2..K of an optimal partition
    of sorted float64 values into ``num_groups >= 2`` groups, by the closed form of K = 2 or the
    DP of K >= 3 (over the whole gain matrix up to ``_LARGE_TASKS`` values, by divide and conquer
    beyond). A start of 0 or ``m`` is an unused group."""
    m = sorted_values.shape[0]
    if num_groups == 2:  # beyond the tables of _tabled: O(M) beats their O(M^2) product
        return [_two_group_start(sorted_values)]
    if m > _LARGE_TASKS:
        return _large_starts(sorted_values, num_groups)
    tables = _dp_tables(m, sorted_values.device, threading.get_ident(), torch.get_num_threads())
    prefix = tables["prefix"]
    whole = len(tables["blocks"]) == 1
    if whole:  # small m: one matrix-vector product each, rather than several steps
        torch.mv(tables["centring_and_steps"], sorted_values, out=tables["prefix_and_tests"])
        allowed = torch.gt(tables["tests"], tables["floor"])
    else:  # large m: O(m) steps rather than O(m^2) products
        torch.cumsum(sorted_values - sorted_values.mean(), 0, out=prefix[1:])
        allowed = torch.ones(m + 1, dtype=torch.bool, device=sorted_values.device)
        torch.gt(sorted_values[1:], sorted_values[:-1], out=allowed[1:m])
    # -inf where no group may start
    blocked = torch.where(allowed, tables["zero"], tables["minus_inf"], out=tables["blocked"])
    splits = (_splits_whole if whole else _splits_in_blocks)(tables, blocked, num_groups)
    return splits[::-1]


@functools.lru_cache(maxsize=32)
def _segment_tables(m: int, device: torch.device) -> dict[str, Tensor]:
    """Read-only constants of :func:`_offsets` and :func:`_segment_means` for ``m`` values."""
    return {
        "first": torch.zeros(1, dtype=torch.int64, device=device),
        "end": torch.full((1,), m, dtype=torch.int64, device=device),
        "positions": torch.arange(m, device=device),
    }


def _offsets(starts: list[Tensor], m: int, device: torch.device) -> Tensor:
    """The group offsets ``[0, b_1, ..., b_{K-1}, m]`` of a partition of ``m`` sorted values:
    group ``g`` is ``[b_g, b_{g+1})``, empty where two offsets are equal."""
    constants = _segment_tables(m, device)
    return torch.cat([constants["first"], *starts, constants["end"]])


def _segment_means(sorted_values: Tensor, offsets: Tensor) -> Tensor:
    """Each sorted value's group mean under the partition of ``offsets`` (see :func:`_offsets`):
    four operations whatever K, on the values' device without host synchronisation (``unsafe``
    skips segment_reduce's checks, which read the offsets back; they are valid by construction)."""
    means = torch.segment_reduce(sorted_values, "mean", offsets=offsets, unsafe=True, initial=0.0)
    # the group of position p: how many offsets after the first are <= p (the last, m, never is)
    positions = _segment_tables(sorted_values.shape[0], sorted_values.device)["positions"]
    return means.index_select(0, torch.searchsorted(offsets[1:], positions, right=True))


def _offset_labels(offsets: Tensor, m: int) -> Tensor:
    """Labels of the sorted positions under the partition of ``offsets``: the number of distinct
    group starts in ``[1, position]``, so that unused groups (empty, starting where another
    does, at 0 or at ``m``) take no label and the used ones are numbered ``0, 1, ...``."""
    marks = torch.zeros(m + 1, dtype=torch.bool, device=offsets.device)
    marks[offsets[1:-1]] = True
    labels = torch.zeros(m, dtype=torch.int64, device=offsets.device)
    torch.cumsum(marks[1:m], 0, out=labels[1:])
    return labels


def _splits_whole(tables: dict, blocked: Tensor, num_groups: int) -> list[Tensor]:
    """The group starts of an optimal partition (last group first), small m: whole matrices,
    max with indices, as few operations as can be."""
    gain, total = tables["gain"], tables["total"]
    torch.sub(tables["prefix_column"], tables["prefix_row"], out=gain).square_()
    torch.addcmul(tables["impossible"], gain, tables["inverse"], out=gain)
    gain.add_(blocked)  # a segment [a, b) may start only where a group may: once, for every layer
    best = tables["first_segment"]  # best gain of [0, b) in one group
    arguments = []
    for _ in range(num_groups - 2):
        best, argument = torch.max(torch.add(gain, best, out=total), dim=1)
        arguments.append(argument)
    splits = [torch.add(tables["last_segment"], best).argmax(0, keepdim=True)]
    for argument in reversed(arguments):
        splits.append(argument.index_select(0, splits[-1]))
    return splits


def _splits_in_blocks(tables: dict, blocked: Tensor, num_groups: int) -> list[Tensor]:
    """As :func:`_splits_whole` for large m, block by block of rows ``b``, each only up to its
    diagonal (half the work): a block's gains are built and every layer's maxima for its rows
    are taken while it is in cache (a layer's row ``b`` needs the previous layer at ``a <= b``
    only, which earlier blocks and this one have given); values only per layer (amax is
    vectorised; max with indices is not), and the split points are recovered afterwards from
    the one row of each layer that the optimum passes through."""
    rows, layers = _best_rows(tables, num_groups)
    # views of the work space made once: slicing costs microseconds per view
    for views, (first, block_layers) in zip(tables["block_views"], layers):
        gain_block, prefix_block, prefix_row, inverse, diagonal, impossible, total_block, column, blocked_part = views
        torch.sub(prefix_block, prefix_row, out=gain_block).square_()
        gain_block.mul_(inverse)
        diagonal.add_(impossible)  # -inf for a > b only occurs in the block's diagonal square
        # Each row of bests is -inf where no group may start, so the next layer starts none there.
        torch.add(column, blocked_part, out=first)  # [0, b) as one group
        for previous, best in block_layers:
            torch.amax(torch.add(gain_block, previous, out=total_block), dim=1, out=best)
            best.add_(blocked_part)
    previous_rows = list(rows)
    splits = [torch.add(tables["last_segment"], previous_rows.pop()).argmax(0, keepdim=True)]
    for previous in reversed(previous_rows):
        splits.append((torch.index_select(tables["gain"], 0, splits[-1]) + previous).argmax(1))
    return splits


def _best_rows(tables: dict, num_groups: int) -> tuple[Tensor, list]:
    """Work space of the DP's layers for ``num_groups`` (row ``j``: the best gain of ``[0, b)``
    in ``j + 1`` groups, -inf where no group may start at ``b``) and, per block, the first row's
    part for the block's rows and each middle layer's views: the previous row up to the block's
    end and this row's part for the block's rows."""
    key = ("best_rows", num_groups)
    if key not in tables:
        gain = tables["gain"]
        rows = torch.empty(num_groups - 1, gain.shape[0], dtype=gain.dtype, device=gain.device)
        layers = [
            (rows[0, start:stop], [(previous[:stop], row[start:stop]) for previous, row in zip(rows[:-1], rows[1:])])
            for start, stop in tables["blocks"]
        ]
        tables[key] = (rows, layers)
    return tables[key]


def kmeans_1d(values: Tensor, num_groups: int) -> Tensor:
    """Globally optimal 1-D K-means labels of ``values`` (1-D), groups in increasing order.

    Solves ``min sum_k sum_{m in k} (v_m - mean_k)^2`` over partitions into at most
    ``num_groups`` groups, exactly (up to float64 rounding). With the values sorted and centred,
    the within-group cost is ``sum v^2 - sum_k S_k^2 / n_k``, so the DP maximises the sum of
    segment gains ``(P[b] - P[a])^2 / (b - a)`` over prefix sums ``P``: ``K = 2`` in closed form
    over the ``M`` split points; ``K >= 3`` over every partition when they are few (``M = 11``,
    ``K = 5``: 386), else one max-plus step over the lower triangle of the ``(M+1)^2`` gain
    matrix per middle group, ``O(K M^2)`` in all. Exact ties between partitions are broken
    towards fewer groups and earlier split points, the same way every run.
    """
    sorted_values, order = torch.sort(values.to(torch.float64), stable=True)
    return _unsort(_sorted_labels(sorted_values, num_groups), order)


def _sorted_labels(sorted_values: Tensor, num_groups: int) -> Tensor:
    """Optimal group labels of sorted float64 values."""
    m = sorted_values.shape[0]
    if num_groups == 1 or m == 1:
        return torch.zeros(m, dtype=torch.int64, device=sorted_values.device)
    if num_groups >= m:  # every distinct value its own group
        starts = torch.diff(sorted_values) > 0
        return torch.cat([starts.new_zeros(1, dtype=torch.int64), torch.cumsum(starts, 0)])
    return _sorted_optimum(sorted_values, num_groups, _tabled(m, num_groups))[1]()


def _sorted_optimum(
    sorted_values: Tensor, num_groups: int, tabled: bool
) -> tuple[Callable[[], Tensor], Callable[[], Tensor]]:
    """An optimal partition of sorted float64 values into ``2 <= num_groups < m`` groups (from the
    tables when ``tabled``, see :func:`_tabled`; else from its split points), as two functions
    that compute, when called, each sorted value's group mean and its label."""
    m = sorted_values.shape[0]
    if tabled:
        tables, choice = _tabled_choice(sorted_values, num_groups)
        return (
            lambda: torch.mv(tables["averages"].index_select(0, choice).view(m, m), sorted_values),
            lambda: _chosen_labels(tables, choice),
        )
    offsets = _offsets(_optimal_starts(sorted_values, num_groups), m, sorted_values.device)
    return lambda: _segment_means(sorted_values, offsets), lambda: _offset_labels(offsets, m)


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


class GroupAssignment:
    """One step's grouping: task ``weights`` (always computed), and ``labels``, ``group_weights``
    (``omega``, by group id) and ``group_sizes``, computed when first read. Unpacks as
    ``weights, labels, group_weights, group_sizes``."""

    def __init__(self, grouping: Grouping, indicators: Tensor, weights: Tensor | None, labels):
        self._grouping, self._indicators, self._labels = grouping, indicators, labels
        if weights is None:
            weights = torch.mv(self._members.T, self.group_weights)
        self.weights = weights

    @functools.cached_property
    def labels(self) -> Tensor:
        return self._labels if isinstance(self._labels, Tensor) else self._labels()

    @functools.cached_property
    def _members(self) -> Tensor:
        ids = self._grouping._group_ids(self._indicators.device)
        return (self.labels == ids).to(self._indicators.dtype)  # [K, M]

    @functools.cached_property
    def group_sizes(self) -> Tensor:
        return self._members.sum(1)

    @functools.cached_property
    def group_weights(self) -> Tensor:
        grouping, indicators = self._grouping, self._indicators
        if grouping.group_weights is None:
            return torch.mv(self._members, indicators).div_(self.group_sizes.clamp_min(1))
        if grouping.group_weights == "random":
            draws = torch.randn(grouping.num_groups, generator=grouping.generator, dtype=torch.float64)
            return torch.softmax(draws, 0).to(indicators.device, indicators.dtype)
        return torch.tensor(grouping.group_weights, dtype=indicators.dtype, device=indicators.device)

    def diagnostics(self) -> dict[str, Callable[[], Tensor]]:
        """``groups``, ``group_weights`` and ``group_sizes`` for :meth:`Weighting.record`,
        computed when read."""
        return {
            "groups": lambda: self.labels,
            "group_weights": lambda: self.group_weights,
            "group_sizes": lambda: self.group_sizes,
        }

    def __iter__(self):
        return iter((self.weights, self.labels, self.group_weights, self.group_sizes))


class Grouping(nn.Module):
    """Turn indicators into task weights by grouping: ``w_m = omega_{k(m)}``.

    Args:
        num_groups: ``K``, the number of groups (at most; see the module docstring).
        clustering: ``"exact"`` (global optimum of Eq. 3, default), ``"kmeans-random"`` (the
            authors' clustering: Lloyd from random distinct data points as initial centres, seeded
            by ``seed``; a local optimum, see :func:`kmeans_random_1d`), ``"lloyd"`` (Lloyd's
            algorithm from quantiles, a local optimum), ``"spectral"`` (scikit-learn, Table 5), ``"random"``
            (a uniformly random partition each step, Fig. 5), a fixed partition given as a
            sequence (or 1-D tensor or array) of ``M`` int group ids in ``[0, K)``, or a callable
            ``(indicators, K) -> labels``.
        group_weights: ``None`` (group weight = mean indicator of the group, Eq. 3), a sequence
            of ``K`` fixed finite weights ``>= 0``, not all 0, indexed by group id (Fig. 5), or
            ``"random"``: softmax of ``K`` standard-normal draws each step (the paper does not
            state its law; this is RLW's).
        seed: seed of the generator behind the random options (saved in ``state_dict``): an
            int that ``torch.Generator`` takes, in ``[0, 2**32)`` for ``"spectral"``
            (scikit-learn's ``random_state``).

    Any other value raises a ``ValueError`` naming the argument and the value.
    """

    def __init__(
        self,
        num_tasks: int,
        num_groups: int,
        clustering: str | Sequence[int] | Callable[[Tensor, int], Tensor] = "exact",
        group_weights: Sequence[float] | str | None = None,
        seed: int = 0,
    ):
        super().__init__()
        if isinstance(num_groups, bool) or not isinstance(num_groups, int) or not 1 <= num_groups <= num_tasks:
            raise ValueError(f"num_groups must be an int in [1, num_tasks={num_tasks}], got {num_groups!r}")
        self.num_tasks, self.num_groups = num_tasks, num_groups
        self.partition: Tensor | None = None
        if isinstance(clustering, str):
            check_choice("clustering", clustering, CLUSTERINGS)
        elif not callable(clustering):
            self.partition = _check_partition(clustering, num_tasks, num_groups)
            clustering = "fixed"
        self.clustering = clustering
        if isinstance(group_weights, str):
            check_choice("group_weights", group_weights, ("random",))
        elif group_weights is not None:
            group_weights = _check_group_weights(group_weights, num_groups)
        self.group_weights = group_weights
        self.seed = check_seed(seed)
        if clustering == "spectral" and not 0 <= seed < 2**32:  # scikit-learn's random_state
            raise ValueError(f"seed must be an int in [0, 2**32) with clustering='spectral', got {seed!r}")
        self.generator = torch.Generator().manual_seed(seed)
        self._ids = torch.arange(num_groups)[:, None]
        # the exact optimum with group means as weights: computed from the sorted indicators
        self._means_of_sorted = (
            self.clustering == "exact" and self.group_weights is None and 2 <= num_groups < num_tasks
        )
        self._tabled = self._means_of_sorted and _tabled(num_tasks, num_groups)

    def needs_indicators(self) -> bool:
        return self.group_weights is None or self.clustering not in ("fixed", "random")

    def labels(self, indicators: Tensor) -> Tensor:
        device = indicators.device
        if self.clustering == "exact":
            return kmeans_1d(indicators, self.num_groups)
        if self.clustering == "kmeans-random":
            return kmeans_random_1d(indicators, self.num_groups, self.generator)
        if self.clustering == "lloyd":
            return lloyd_1d(indicators, self.num_groups)
        if self.clustering == "spectral":
            return spectral_1d(indicators, self.num_groups, random_state=self.seed)
        if self.clustering == "random":
            return torch.randint(self.num_groups, (self.num_tasks,), generator=self.generator).to(device)
        if self.clustering == "fixed":
            return self.partition.to(device)
        labels = torch.as_tensor(self.clustering(indicators, self.num_groups), device=device)
        if labels.shape != (self.num_tasks,) or labels.dtype != torch.int64:
            raise ValueError(f"custom clustering must return {self.num_tasks} int64 labels, got {labels!r}")
        return labels

    def forward(self, indicators: Tensor) -> GroupAssignment:
        """Group 1-D indicators; the result's ``weights`` are the task weights ``w_m = omega_{k(m)}``.

        The result unpacks as ``weights, labels, group_weights, group_sizes``; the last three are
        computed when first read, so that a step that does not look at them does not pay for them.
        """
        if self._means_of_sorted:
            # An optimal partition of the sorted indicators, then the task weights straight from
            # it (the averaging matrix of the tables, or segment means); the labels are derived
            # only if somebody reads them.
            sorted_values, order = torch.sort(cast(indicators, torch.float64), stable=True)
            means, labels = _sorted_optimum(sorted_values, self.num_groups, self._tabled)
            weights = cast(_unsort(means(), order), indicators.dtype)
            return GroupAssignment(self, indicators, weights, lambda: _unsort(labels(), order))
        return GroupAssignment(self, indicators, None, self.labels(indicators))

    def _group_ids(self, device: torch.device) -> Tensor:
        if self._ids.device != device:
            self._ids = self._ids.to(device)
        return self._ids

    def get_extra_state(self) -> dict:
        return {"generator": self.generator.get_state()}

    def set_extra_state(self, state: dict) -> None:
        self.generator.set_state(state["generator"])

    def extra_repr(self) -> str:
        clustering = self.partition.tolist() if self.partition is not None else self.clustering
        if callable(clustering):  # by name: the same in every process, so a resumed run matches
            clustering = callable_name(clustering)
        return f"num_groups={self.num_groups}, clustering={clustering!r}, group_weights={self.group_weights!r}, seed={self.seed}"


def _entries(value: object) -> list | None:
    """The entries of a 1-D sequence, tensor or array; ``None`` for anything else (a number, a
    string, a 0-d tensor or numpy scalar, an object that is not iterable)."""
    if isinstance(value, (str, bytes)) or getattr(value, "ndim", 1) != 1:
        return None
    try:
        return value.tolist() if hasattr(value, "tolist") else list(value)
    except TypeError:
        return None


def _check_partition(clustering: object, num_tasks: int, num_groups: int) -> Tensor:
    """A fixed partition: ``num_tasks`` integer group ids in ``[0, num_groups)``."""
    ids = _entries(clustering)
    if (
        ids is None
        or len(ids) != num_tasks
        or not all(isinstance(g, numbers.Integral) and not isinstance(g, bool) and 0 <= g < num_groups for g in ids)
    ):
        raise ValueError(
            f"clustering must be one of {CLUSTERINGS}, a callable (indicators, K) -> labels, or a fixed "
            f"partition of num_tasks={num_tasks} int group ids in [0, {num_groups}), got {clustering!r}"
        )
    return torch.tensor([int(g) for g in ids], dtype=torch.int64)


def _nonnegative_float(value: object) -> float | None:
    """``value`` as a finite float >= 0, or ``None`` (a bool, a non-number, NaN, inf, an int
    beyond float's range)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if 0 <= number < math.inf else None


def _check_group_weights(group_weights: object, num_groups: int) -> list[float]:
    """Fixed group weights: ``num_groups`` finite numbers >= 0, not all 0."""
    entries = _entries(group_weights)
    fixed = None if entries is None else [_nonnegative_float(w) for w in entries]
    if fixed is None or len(fixed) != num_groups or None in fixed or not any(fixed):
        raise ValueError(
            f"group_weights must be None, 'random' or num_groups={num_groups} finite numbers >= 0, not all 0, "
            f"got {group_weights!r}"
        )
    return fixed


def callable_name(value: object) -> str:
    """A name for a function, class or callable object that does not change between processes:
    ``module.qualified_name``, an object's own ``repr``, or its class's name when its ``repr`` is
    the default one (which holds a memory address)."""
    if hasattr(value, "__qualname__"):
        return f"{value.__module__}.{value.__qualname__}"
    kind = type(value)
    if kind.__repr__ is object.__repr__:
        return f"{kind.__module__}.{kind.__qualname__} object"
    return repr(value)
