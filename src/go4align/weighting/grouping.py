"""Dynamical group assignment (GO4Align Eq. 3): group tasks by their indicators.

For a fixed assignment ``G`` the optimal group weights of Eq. 3 are the group means of the
indicators, so Eq. 3 is one-dimensional K-means and the centroid is the group weight. In sorted
order the optimal groups are contiguous runs, so :func:`kmeans_1d` finds the global optimum with
a dynamic programme over split points: deterministic, no restarts, no empty-cluster loops, and a
few tensor operations on the indicators' device with no host synchronisation.

Groups are numbered by increasing group weight. Equal indicators are never split between groups
(an optimum that does not split them always exists), which keeps the result permutation
equivariant; when fewer than ``K`` distinct indicators exist, fewer groups are used and the
unused groups have weight 0 and size 0.
"""

from __future__ import annotations

import functools
import threading
from typing import Callable, Sequence

import torch
from torch import Tensor, nn

from .base import check_choice

__all__ = ["kmeans_1d", "lloyd_1d", "spectral_1d", "Grouping", "CLUSTERINGS"]

CLUSTERINGS = ("exact", "lloyd", "spectral", "random")


@functools.lru_cache(maxsize=16)
def _segment_tables(m: int, device: torch.device, thread: int) -> dict[str, Tensor]:
    """Per-size constants and work space of the DP (one set per thread, since the work space is
    written): 1/length of the first and last segments, 1/(b - a) for segments [a, b), -inf where
    a > b (no such segment), and two (M+1)^2 buffers so that a step allocates no large tensor."""
    positions = torch.arange(m + 1, dtype=torch.float64, device=device)
    first = 1 / positions.clamp_min(1)  # [0, b): an empty first group has gain 0
    last = torch.where(positions < m, 1 / (m - positions).clamp_min(1), torch.zeros_like(positions))
    tables = {"positions": torch.arange(m, device=device), "two": (first + last)[1:], "first": first, "last": last}
    if m > 3:
        length = positions[:, None] - positions[None, :]  # [b, a]
        tables["inverse"] = torch.where(length > 0, 1 / length.clamp_min(1), torch.zeros_like(length))
        tables["impossible"] = torch.where(length < 0, float("-inf"), 0.0)
        tables["gain"] = torch.empty_like(length)
        tables["total"] = torch.empty_like(length)
    return tables


def kmeans_1d(values: Tensor, num_groups: int) -> Tensor:
    """Globally optimal 1-D K-means labels of ``values`` (1-D), groups in increasing order.

    Solves ``min sum_k sum_{m in k} (v_m - mean_k)^2`` over partitions into at most
    ``num_groups`` groups, exactly (up to float64 rounding). With the values sorted and centred,
    the within-group cost is ``sum v^2 - sum_k S_k^2 / n_k``, so the DP maximises the sum of
    segment gains ``(P[b] - P[a])^2 / (b - a)`` over prefix sums ``P``: the first and last
    groups need only vectors, each middle group one dense ``(M+1)^2`` step, ``O(K M^2)`` in all.
    Exact ties between partitions are broken towards earlier split points, the same way every run.
    """
    m = values.shape[0]
    sorted_values, order = torch.sort(values, stable=True)
    run_starts = sorted_values[1:] > sorted_values[:-1]  # positions 1..M-1 where a new value begins
    if num_groups == 1:
        labels = torch.zeros(m, dtype=torch.int64, device=values.device)
    elif num_groups == 2 and m > 2:
        labels = _two_groups(sorted_values, run_starts)
    else:
        if num_groups < m:
            run_starts = _optimal_splits(sorted_values, run_starts, num_groups)
        labels = torch.zeros(m, dtype=torch.int64, device=values.device)
        torch.cumsum(run_starts, 0, out=labels[1:])
    return labels.scatter(0, order, labels)


def _two_groups(sorted_values: Tensor, run_starts: Tensor) -> Tensor:
    """The DP for K = 2 in closed form: labels of the sorted positions."""
    m = sorted_values.shape[0]
    tables = _segment_tables(m, sorted_values.device, threading.get_ident())
    x = sorted_values.to(torch.float64)
    prefix = torch.cumsum(x - x.mean(), 0)  # P[1..M], P[M] = 0
    # Splitting before position a gains P[a]^2 (1/a + 1/(M-a)); a = M (gain 0) means one group.
    gain = prefix.square_().mul_(tables["two"])
    gain[:-1].masked_fill_(~run_starts, float("-inf"))
    return (tables["positions"] > gain.argmax()).long()


def _optimal_splits(sorted_values: Tensor, run_starts: Tensor, num_groups: int) -> Tensor:
    """Mark the sorted positions 1..M-1 that start a group in an optimal partition (K >= 3)."""
    m = sorted_values.shape[0]
    tables = _segment_tables(m, sorted_values.device, threading.get_ident())
    first, last = tables["first"], tables["last"]
    x = sorted_values.to(torch.float64)
    prefix = torch.zeros(m + 1, dtype=torch.float64, device=x.device)
    torch.cumsum(x - x.mean(), 0, out=prefix[1:])
    # A group may start only where a run of equal values starts (or at the ends).
    blocked = torch.zeros_like(prefix)
    blocked[1:m].masked_fill_(~run_starts, float("-inf"))
    best = prefix.square().mul_(first).add_(blocked)  # best gain of [0, a) in one group
    gain, total = tables["gain"], tables["total"]
    torch.sub(prefix[:, None], prefix[None, :], out=gain).square_().mul_(tables["inverse"]).add_(tables["impossible"])
    # Values only per layer (amax is vectorised; max with indices is not), split points are
    # recovered afterwards from the one row of each layer that the optimum passes through.
    bests = [best]
    for _ in range(num_groups - 2):
        best = torch.add(gain, best, out=total).amax(dim=1).add_(blocked)
        bests.append(best)
    split = (prefix[m] - prefix).square_().mul_(last).add_(best).argmax()
    splits = [split]
    for previous in reversed(bests[:-1]):
        split = (torch.index_select(gain, 0, split.view(1))[0] + previous).argmax()
        splits.append(split)
    marks = torch.zeros(m + 1, dtype=torch.bool, device=x.device)
    marks[torch.stack(splits)] = True
    return marks[1:m]


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


def spectral_1d(values: Tensor, num_groups: int, random_state: int = 0) -> Tensor:
    """scikit-learn's SpectralClustering with ``assign_labels='cluster_qr'`` (Table 5), on the CPU.

    Needs the ``sklearn`` extra; costs a device-to-host copy and milliseconds per step.
    """
    try:
        from sklearn.cluster import SpectralClustering
    except ImportError as error:  # pragma: no cover - exercised only without the extra
        raise ImportError(
            "clustering='spectral' needs scikit-learn: pip install 'go4align[sklearn]'"
        ) from error
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


class Grouping(nn.Module):
    """Turn indicators into task weights by grouping: ``w_m = omega_{k(m)}``.

    Args:
        num_groups: ``K``, the number of groups (at most; see the module docstring).
        clustering: ``"exact"`` (global optimum of Eq. 3, default), ``"lloyd"`` (Lloyd's
            algorithm, a local optimum), ``"spectral"`` (scikit-learn, Table 5), ``"random"``
            (a uniformly random partition each step, Fig. 5), a fixed partition given as a
            sequence of ``M`` group ids in ``[0, K)``, or a callable ``(indicators, K) -> labels``.
        group_weights: ``None`` (group weight = mean indicator of the group, Eq. 3), a sequence
            of ``K`` fixed weights indexed by group id (Fig. 5), or ``"random"``: softmax of ``K``
            standard-normal draws each step (the paper does not state its law; this is RLW's).
        seed: seed of the generator behind the random options (saved in ``state_dict``).
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
            partition = list(clustering)
            if len(partition) != num_tasks or not all(
                isinstance(g, int) and not isinstance(g, bool) and 0 <= g < num_groups for g in partition
            ):
                raise ValueError(
                    f"a fixed partition must list num_tasks={num_tasks} group ids in [0, {num_groups}), "
                    f"got {clustering!r}"
                )
            self.partition = torch.tensor(partition, dtype=torch.int64)
            clustering = "fixed"
        self.clustering = clustering
        if isinstance(group_weights, str):
            check_choice("group_weights", group_weights, ("random",))
        elif group_weights is not None:
            fixed = [float(w) for w in group_weights]
            if len(fixed) != num_groups or not all(w >= 0 and w < float("inf") for w in fixed) or not any(fixed):
                raise ValueError(
                    f"fixed group_weights must be {num_groups} finite non-negative numbers, not all 0, "
                    f"got {group_weights!r}"
                )
            group_weights = fixed
        self.group_weights = group_weights
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed must be an int, got {seed!r}")
        self.seed = seed
        self.generator = torch.Generator().manual_seed(seed)
        self._ids = torch.arange(num_groups)[:, None]

    def needs_indicators(self) -> bool:
        return self.group_weights is None or self.clustering not in ("fixed", "random")

    def labels(self, indicators: Tensor) -> Tensor:
        device = indicators.device
        if self.clustering == "exact":
            return kmeans_1d(indicators, self.num_groups)
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

    def forward(self, indicators: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Return ``(task_weights, labels, group_weights, group_sizes)`` for 1-D indicators."""
        labels = self.labels(indicators)
        members = (labels == self._group_ids(indicators.device)).to(indicators.dtype)  # [K, M]
        sizes = members.sum(1)
        if self.group_weights is None:
            omega = torch.mv(members, indicators).div_(sizes.clamp_min(1))
        elif self.group_weights == "random":
            draws = torch.randn(self.num_groups, generator=self.generator, dtype=torch.float64)
            omega = torch.softmax(draws, 0).to(indicators.device, indicators.dtype)
        else:
            omega = torch.tensor(self.group_weights, dtype=indicators.dtype, device=indicators.device)
        return torch.mv(members.T, omega), labels, omega, sizes

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
        return f"num_groups={self.num_groups}, clustering={clustering!r}, group_weights={self.group_weights!r}, seed={self.seed}"
