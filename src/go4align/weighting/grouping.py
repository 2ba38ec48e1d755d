"""Dynamical group assignment (GO4Align Eq. 3): group tasks by their indicators.

For a fixed assignment ``G`` the optimal group weights of Eq. 3 are the group means of the
indicators, so Eq. 3 is one-dimensional K-means and the centroid is the group weight:
:class:`Grouping` gives every task its group's mean indicator, with the exact optimum of
:func:`~go4align.weighting.kmeans.kmeans_1d` by default, and the other clusterings and group
weights of the paper's ablations (Table 5, Fig. 5) as options.

Groups are numbered by increasing group weight. Equal indicators are never split between groups
(an optimum that does not split them always exists), which keeps the result permutation
equivariant; when fewer than ``K`` distinct indicators exist, fewer groups are used and the
unused groups have weight 0 and size 0.
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from ._checks import check_seed
from .base import cast, check_choice
from .kmeans import kmeans_1d, kmeans_1d_means, kmeans_random_1d, lloyd_1d, spectral_1d

__all__ = ["callable_name", "Grouping", "GroupAssignment", "CLUSTERINGS"]

CLUSTERINGS = ("exact", "kmeans-random", "lloyd", "spectral", "random")


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
        # the method itself: group means of the exact optimum, straight from the sorted indicators
        self._exact_means = self.clustering == "exact" and self.group_weights is None

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
        if self._exact_means:  # the method itself: labels only if somebody reads them
            means, labels = kmeans_1d_means(indicators, self.num_groups)
            return GroupAssignment(self, indicators, cast(means, indicators.dtype), labels)
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
