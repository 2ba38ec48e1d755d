"""Splitting a grid's runs between the jobs of a job array: ``go4align bench --shard k/n``.

A shard is ``k/n``: job ``k`` (1-based, ``1 <= k <= n``) of ``n``. The partition depends on the
grid's method labels, seeds and number of tasks only, never on the order they were given in or
on what has run, so the ``n`` jobs of one command cover every run exactly once:

1. a run's work is the models it trains: 1, or ``M`` for an STL run (one model per task);
2. the runs are ordered by work (largest first), then method label, then seed;
3. each run in turn goes to the shard with the least work so far, the lowest ``k`` on a tie.

Without STL this is round-robin over the runs sorted by (label, seed): run ``i`` (0-based) goes
to shard ``i mod n + 1``. ``--shard auto`` takes ``k/n`` from a Slurm job array
(``SLURM_ARRAY_TASK_ID``, ``SLURM_ARRAY_TASK_MIN``, ``SLURM_ARRAY_TASK_STEP``,
``SLURM_ARRAY_TASK_COUNT``), for ``sbatch --array`` scripts.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = ["Shard", "parse_shard", "shard_from_slurm", "partition"]

STL = "stl"
_SLURM = ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_MIN", "SLURM_ARRAY_TASK_COUNT")


@dataclass(frozen=True)
class Shard:
    """Job ``index`` (1-based) of ``count``."""

    index: int
    count: int

    def __post_init__(self) -> None:
        for name in ("index", "count"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"shard {name} must be an int, got {value!r}")
        if self.count < 1 or not 1 <= self.index <= self.count:
            raise ValueError(
                f"shard {self.index}/{self.count}: k/n needs n >= 1 and 1 <= k <= n (k is 1-based: "
                f"the shards of n = {max(self.count, 1)} are 1/{max(self.count, 1)} to "
                f"{max(self.count, 1)}/{max(self.count, 1)})"
            )

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str, environ: Mapping[str, str] | None = None) -> Shard:
    """``"k/n"`` (1-based ``k``), or ``"auto"`` for the shard of a Slurm array task."""
    if text.strip() == "auto":
        return shard_from_slurm(os.environ if environ is None else environ)
    index, slash, count = text.partition("/")
    try:
        if not slash:
            raise ValueError
        parsed = int(index), int(count)
    except ValueError:
        raise ValueError(f"shard must be k/n with ints, 1 <= k <= n (e.g. 1/4), or auto; got {text!r}") from None
    return Shard(*parsed)


def shard_from_slurm(environ: Mapping[str, str]) -> Shard:
    """The shard of a Slurm array task: tasks ``MIN, MIN+STEP, ...`` are shards ``1, 2, ...`` of
    ``SLURM_ARRAY_TASK_COUNT`` (an array given as a list with gaps, ``--array=1,5,7``, has no
    such numbering and is refused)."""
    missing = [name for name in _SLURM if name not in environ]
    if missing:
        raise ValueError(
            f"--shard auto reads a Slurm job array's {', '.join(_SLURM)}; {', '.join(missing)} not set "
            "(outside an sbatch --array job, give --shard k/n)"
        )
    try:
        task, low, count = (int(environ[name]) for name in _SLURM)
        step = int(environ.get("SLURM_ARRAY_TASK_STEP", "1"))
    except ValueError:
        values = {name: environ[name] for name in _SLURM}
        raise ValueError(f"--shard auto: the Slurm array variables are not ints: {values}") from None
    offset, rest = divmod(task - low, step) if step > 0 else (-1, 0)
    if rest or not 0 <= offset < count:
        raise ValueError(
            f"--shard auto: array task {task} is not task MIN + i*STEP (MIN {low}, STEP {step}) with "
            f"i < SLURM_ARRAY_TASK_COUNT = {count}; use a range (--array=0-{count - 1}) or --shard k/n"
        )
    return Shard(offset + 1, count)


def partition(labels: Sequence[str], seeds: Sequence[int], num_tasks: int, shard: Shard) -> set[tuple[str, int]]:
    """The ``(label, seed)`` runs of ``shard`` (see the module docstring for the rule)."""
    if num_tasks < 1:
        raise ValueError(f"num_tasks must be >= 1, got {num_tasks}")

    def work(label: str) -> int:
        return num_tasks if label == STL else 1

    runs = sorted({(label, seed) for label in labels for seed in seeds}, key=lambda r: (-work(r[0]), r[0], r[1]))
    load = [0] * shard.count
    mine = set()
    for run in runs:
        least = min(range(shard.count), key=lambda k: (load[k], k))
        load[least] += work(run[0])
        if least == shard.index - 1:
            mine.add(run)
    return mine
