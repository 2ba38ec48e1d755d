"""Summary statistics of multi-task results: Delta-m%, mean rank, LibMTL's Delta-p, convergence.

Everything here works on plain dicts and sequences of floats, so results files, published tables and
live training share one implementation. Only numpy is needed.

Directions are the strings ``"higher"`` (higher is better) and ``"lower"`` (lower is better).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

__all__ = [
    "HIGHER",
    "LOWER",
    "convergence_epoch",
    "delta_m",
    "delta_p",
    "mean_and_standard_error",
    "mean_rank",
    "standard_error",
]

HIGHER = "higher"
LOWER = "lower"


def _loss_sign(name: str, directions: Mapping[str, str]) -> float:
    """(-1)^{d_s}: +1 when lower is better, -1 when higher is better."""
    if name not in directions:
        raise ValueError(f"no direction given for metric {name!r}")
    direction = directions[name]
    if direction == LOWER:
        return 1.0
    if direction == HIGHER:
        return -1.0
    raise ValueError(f"direction of metric {name!r} must be {HIGHER!r} or {LOWER!r}, got {direction!r}")


def _relative_changes(
    metrics: Mapping[str, float], reference: Mapping[str, float], directions: Mapping[str, str]
) -> dict[str, float]:
    """Per metric (-1)^{d_s} (M_s - B_s) / B_s: positive means worse than the reference."""
    if not reference:
        raise ValueError("the reference holds no metrics")
    missing = [name for name in reference if name not in metrics]
    if missing:
        raise ValueError(f"metrics missing for {missing}; the reference has {sorted(reference)}")
    changes = {}
    for name, base in reference.items():
        base = float(base)
        if base == 0.0 or not math.isfinite(base):
            raise ValueError(f"reference value of metric {name!r} must be finite and non-zero, got {base}")
        changes[name] = _loss_sign(name, directions) * (float(metrics[name]) - base) / base
    return changes


def delta_m(metrics: Mapping[str, float], reference: Mapping[str, float], directions: Mapping[str, str]) -> float:
    """Delta-m%: mean relative loss of performance against a (single-task) reference, in percent.

    Delta-m% = 100 / S * sum_s (-1)^{d_s} (M_s - B_s) / B_s over the S metrics of ``reference``,
    with d_s = 1 when higher is better. Lower is better; negative beats the reference. Every metric
    counts once, so a task with many metrics weighs more (compare :func:`delta_p`).

    Parameters
    ----------
    metrics: the method's value per metric; metrics absent from ``reference`` are ignored.
    reference: B_s per metric, usually single-task learning; each must be finite and non-zero.
    directions: ``"higher"`` or ``"lower"`` per metric of ``reference``.

    A non-finite metric value (a diverged run) gives a non-finite result rather than an error.
    """
    changes = _relative_changes(metrics, reference, directions)
    return 100.0 * float(np.mean(list(changes.values())))


def delta_p(
    metrics: Mapping[str, float],
    reference: Mapping[str, float],
    directions: Mapping[str, str],
    tasks: Mapping[str, Sequence[str]],
) -> float:
    """LibMTL's Delta-p%: relative improvement averaged per task first, then over tasks.

    Delta-p% = 100 / T * sum_t 1 / S_t * sum_{s in t} -(-1)^{d_s} (M_s - B_s) / B_s.
    Higher is better: the sign is the opposite of :func:`delta_m`, and each task counts once however
    many metrics it has, so it is a different number from Delta-m% and must not be reported as it.

    Parameters
    ----------
    tasks: the metric names of each task; together they must cover ``reference`` exactly once.
    """
    grouped = [name for names in tasks.values() for name in names]
    if sorted(grouped) != sorted(reference):
        raise ValueError(
            f"tasks must group every reference metric exactly once; got {dict(tasks)}, "
            f"reference metrics {sorted(reference)}"
        )
    empty = [task for task, names in tasks.items() if not names]
    if empty:
        raise ValueError(f"tasks {empty} have no metrics")
    changes = _relative_changes(metrics, reference, directions)
    per_task = [np.mean([-changes[name] for name in names]) for names in tasks.values()]
    return 100.0 * float(np.mean(per_task))


def mean_rank(
    table: Mapping[str, Mapping[str, float]],
    directions: Mapping[str, str],
    decimals: int | Mapping[str, int] | None = None,
) -> dict[str, float]:
    """MR: each method's rank per metric among the methods of ``table``, averaged over metrics.

    Competition ranking: a method's rank is 1 + the number of methods strictly better, so ties share
    the lowest rank (1, 2, 2, 4). Published tables rank the printed values, so pass ``decimals``
    (one int, or one per metric) to round before ranking. A non-finite value ranks after every
    finite one. MR depends on which methods are in the table.

    Parameters
    ----------
    table: method -> metric -> value; every method needs every metric of ``directions``.
    directions: ``"higher"`` or ``"lower"`` per metric; these are the metrics ranked.
    decimals: printed precision, applied before ranking.
    """
    if not table:
        raise ValueError("the table holds no methods")
    if not directions:
        raise ValueError("no metrics to rank: directions is empty")
    methods = list(table)
    ranks = np.zeros((len(methods), len(directions)))
    for column, name in enumerate(directions):
        missing = [method for method in methods if name not in table[method]]
        if missing:
            raise ValueError(f"methods {missing} have no value for metric {name!r}")
        places = decimals.get(name) if isinstance(decimals, Mapping) else decimals
        # Ranking "lower is better" everywhere: negate the metrics where higher is better.
        values = np.array([_loss_sign(name, directions) * float(table[m][name]) for m in methods])
        if places is not None:
            values = np.round(values, places)
        values = np.where(np.isfinite(values), values, np.inf)
        ranks[:, column] = 1 + (values[None, :] < values[:, None]).sum(axis=1)
    return dict(zip(methods, ranks.mean(axis=1).tolist(), strict=True))


def standard_error(values: Sequence[float]) -> float:
    """Standard error of the mean, std (ddof=1) / sqrt(n); NaN for a single value (undefined)."""
    array = np.asarray(values, dtype=float)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"standard_error needs a non-empty 1-D sequence, got shape {array.shape}")
    if array.size == 1:
        return math.nan
    return float(array.std(ddof=1) / math.sqrt(array.size))


def mean_and_standard_error(values: Sequence[float]) -> tuple[float, float]:
    """(mean, standard error) over seeds, as reported in "mean +- s.e." cells."""
    se = standard_error(values)
    return float(np.mean(values)), se


def convergence_epoch(losses: Sequence[float], epochs: Sequence[int] | None = None, tolerance: float = 0.05) -> int:
    """The epoch from which a loss curve stays within ``tolerance`` of the way to its final value.

    The band is ``|loss - final| <= tolerance * |first - final|``, where first and final are the losses of
    the first and last epoch. The curve converges at the first epoch after which it never leaves the
    band again: on a monotone curve this is the first epoch inside the band, and on a noisy one an
    early dip into the band does not count as convergence. A flat curve converges at its first epoch.

    Parameters
    ----------
    losses: one (training) loss per epoch, in order.
    epochs: the epoch numbers of ``losses``; default 0, 1, 2, ...
    tolerance: half-width of the band as a fraction of the total change; 0.05 in the reports.
    """
    curve = np.asarray(losses, dtype=float)
    if curve.ndim != 1 or curve.size == 0:
        raise ValueError(f"losses must be a non-empty 1-D sequence, got shape {curve.shape}")
    if not np.all(np.isfinite(curve)):
        raise ValueError("losses must be finite to define convergence")
    if not 0.0 <= tolerance < 1.0:
        raise ValueError(f"tolerance must be in [0, 1), got {tolerance}")
    epochs = list(range(curve.size)) if epochs is None else list(epochs)
    if len(epochs) != curve.size:
        raise ValueError(f"{len(epochs)} epochs given for {curve.size} losses")
    outside = np.abs(curve - curve[-1]) > tolerance * abs(curve[0] - curve[-1])
    last_outside = np.flatnonzero(outside)
    return epochs[0] if last_outside.size == 0 else epochs[last_outside[-1] + 1]
