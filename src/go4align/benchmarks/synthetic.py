"""Synthetic many-task regression with planted task groups, loss scales and conflict.

The problem (all drawn from ``data_seed``): ``G`` groups with orthonormal base directions
``v_g`` in ``R^d``; group ``g``'s direction is ``u_g = v_g`` for even ``g`` and
``u_g = -c v_{g-1} + sqrt(1 - c^2) v_g`` for odd ``g``, so that groups ``2j`` and ``2j+1``
conflict with cosine ``-c`` (``c = conflict``). Task ``m`` of group ``g`` has the direction
``w_m = u_g + spread z_m / sqrt(d)`` (``z_m`` standard normal) and the target

    y_m = s_g (w_m . x + noise * eps),   x ~ N(0, I_d),  eps ~ N(0, 1),

so its loss scales with ``s_g^2`` (``scales``). Tasks are assigned to groups by a seeded
permutation in near-equal numbers (:attr:`SyntheticProblem.groups`).

The model is linear and hard-shared: ``h = W_s x`` with ``W_s`` of ``hidden_dim`` rows (by default
one per planted group: with fewer, no allocation fits every group direction, every method leaves
groups unfitted alike and Delta-m barely separates methods), then one linear head per task,
stored as one ``[M, hidden_dim]`` matrix so that ``M = 1000`` stays cheap. Losses are per-task
MSE, metrics per-task test MSE (``<task>_mse``, lower is better).

:func:`grouping_recovery` measures how well a method's groups match :func:`planted_groups`
(adjusted Rand index, numpy only). GO4Align groups tasks by their current loss level (its
indicator is about ``mean(L) / L_m``), so it recovers planted groups when their loss levels stay
apart, e.g. at the noise floor with enough capacity (``tests/benchmarks/test_synthetic.py``); with
conflict and too little capacity the levels cross during training and recovery drops (with
``hidden_dim = 2`` and 4 groups, an adjusted Rand index of about 0.1 to 0.5 after a few epochs; in
a 100-epoch pilot with ``hidden_dim = 4``, 0.49 to 0.59).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from .api import Benchmark, Metric, Protocol, Task

__all__ = [
    "SyntheticProblem",
    "make_problem",
    "SyntheticRegression",
    "SyntheticDataset",
    "adjusted_rand_index",
    "grouping_recovery",
    "planted_groups",
    "TaskMSE",
    "make_benchmark",
]


@dataclass(frozen=True, eq=False)
class SyntheticProblem:
    """A drawn problem: planted groups, group scales, task directions (see the module docstring)."""

    groups: np.ndarray  # [M] planted group of each task
    scales: np.ndarray  # [G] target scale of each group
    directions: Tensor  # [M, d] w_m
    noise: float
    data_seed: int

    @property
    def num_tasks(self) -> int:
        return len(self.groups)

    @property
    def input_dim(self) -> int:
        return self.directions.shape[1]

    @property
    def task_names(self) -> list[str]:
        width = len(str(self.num_tasks - 1))
        return [f"t{m:0{width}d}" for m in range(self.num_tasks)]

    def sample(self, n: int, stream: int) -> tuple[Tensor, Tensor]:
        """``n`` inputs ``[n, d]`` and targets ``[n, M]``; ``stream`` separates the splits."""
        generator = torch.Generator().manual_seed(self.data_seed * 1000 + stream)
        x = torch.randn(n, self.input_dim, generator=generator)
        eps = torch.randn(n, self.num_tasks, generator=generator)
        scale = torch.as_tensor(self.scales[self.groups], dtype=torch.float32)
        y = (x @ self.directions.T + self.noise * eps) * scale
        return x, y


def _check_int(name: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    return value


def make_problem(
    num_tasks: int = 20,
    num_groups: int = 4,
    input_dim: int = 16,
    scales: Sequence[float] | None = None,
    conflict: float = 0.5,
    spread: float = 0.1,
    noise: float = 0.1,
    data_seed: int = 0,
) -> SyntheticProblem:
    """Draw a problem. ``scales`` defaults to ``logspace(0, 1, num_groups)``: losses from 1x to 100x."""
    _check_int("num_tasks", num_tasks, 1)
    _check_int("num_groups", num_groups, 1)
    _check_int("data_seed", data_seed, 0)
    if num_groups > num_tasks:
        raise ValueError(f"num_groups must be <= num_tasks={num_tasks}, got {num_groups}")
    if _check_int("input_dim", input_dim, 1) < num_groups:
        raise ValueError(f"input_dim must be >= num_groups={num_groups} (one direction per group), got {input_dim}")
    if not 0 <= conflict <= 1:
        raise ValueError(f"conflict must be in [0, 1], got {conflict!r}")
    for name, value in (("spread", spread), ("noise", noise)):
        if not (value >= 0 and math.isfinite(value)):
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    scales = np.logspace(0, 1, num_groups) if scales is None else np.asarray(scales, dtype=np.float64)
    if scales.shape != (num_groups,) or not np.all(scales > 0) or not np.all(np.isfinite(scales)):
        raise ValueError(f"scales must be {num_groups} finite positive numbers, got {scales.tolist()!r}")

    generator = torch.Generator().manual_seed(data_seed)
    basis, _ = torch.linalg.qr(torch.randn(input_dim, num_groups, generator=generator, dtype=torch.float64))
    base = basis.T  # [G, d], orthonormal rows
    directions = base.clone()
    for g in range(1, num_groups, 2):
        directions[g] = -conflict * base[g - 1] + math.sqrt(1 - conflict**2) * base[g]
    groups = torch.arange(num_tasks) % num_groups
    groups = groups[torch.randperm(num_tasks, generator=generator)]
    z = torch.randn(num_tasks, input_dim, generator=generator, dtype=torch.float64)
    task_directions = directions[groups] + spread * z / math.sqrt(input_dim)
    return SyntheticProblem(
        groups=groups.numpy(),
        scales=scales,
        directions=task_directions.float(),
        noise=float(noise),
        data_seed=data_seed,
    )


class SyntheticRegression(nn.Module):
    """Linear hard sharing: a shared ``Linear(d, hidden_dim)`` and a linear head per task."""

    def __init__(self, task_names: Sequence[str], input_dim: int, hidden_dim: int):
        super().__init__()
        self.task_names = list(task_names)
        self.shared = nn.Linear(input_dim, hidden_dim, bias=False)
        heads = nn.Linear(hidden_dim, len(self.task_names))
        self.head_weight, self.head_bias = heads.weight, heads.bias

    def forward(self, x: Tensor, return_representation: bool = False):
        representation = self.shared(x)
        out = nn.functional.linear(representation, self.head_weight, self.head_bias)
        predictions = dict(zip(self.task_names, out.unbind(1)))
        return (predictions, representation) if return_representation else predictions

    def shared_parameters(self) -> list[nn.Parameter]:
        return list(self.shared.parameters())

    def task_parameters(self) -> list[nn.Parameter]:
        return [self.head_weight, self.head_bias]


class SyntheticDataset(torch.utils.data.Dataset):
    """Inputs ``[n, d]`` and targets ``[n, M]``, served a whole batch at a time."""

    def __init__(self, x: Tensor, y: Tensor, task_names: Sequence[str]):
        self.x, self.y, self.task_names = x, y, list(task_names)

    def __len__(self) -> int:
        return self.x.shape[0]

    def __getitem__(self, index: int):
        return self.x[index], dict(zip(self.task_names, self.y[index].unbind(0)))

    def get_batch(self, indices):
        indices = torch.as_tensor(indices, dtype=torch.int64)
        return self.x[indices], dict(zip(self.task_names, self.y[indices].unbind(1)))


class TaskMSE:
    """Per-task mean squared error, vectorised over tasks (``M`` may be 1000)."""

    def __init__(self, task_names: Sequence[str]):
        self.task_names = list(task_names)
        self.sums = torch.zeros(len(self.task_names), dtype=torch.float64)
        self.count = 0

    def update(self, predictions, targets) -> None:
        prediction = torch.stack([predictions[t] for t in self.task_names], 1)
        target = torch.stack([targets[t] for t in self.task_names], 1)
        self.sums += ((prediction - target).double() ** 2).sum(0).cpu()
        self.count += prediction.shape[0]

    def compute(self) -> dict[str, float]:
        if self.count == 0:
            raise ValueError("TaskMSE.compute() before any update()")
        return {f"{t}_mse": v for t, v in zip(self.task_names, (self.sums / self.count).tolist())}


def adjusted_rand_index(labels_a: Sequence[int], labels_b: Sequence[int]) -> float:
    """Adjusted Rand index of two partitions (Hubert and Arabie, 1985); 1 = identical up to
    renaming, about 0 = chance. Like scikit-learn, two trivial partitions score 1."""
    a, b = np.asarray(labels_a), np.asarray(labels_b)
    if a.ndim != 1 or a.shape != b.shape:
        raise ValueError(f"labels must be two 1-D arrays of one length, got shapes {a.shape} and {b.shape}")
    _, a = np.unique(a, return_inverse=True)
    _, b = np.unique(b, return_inverse=True)
    table = np.zeros((a.max() + 1, b.max() + 1), dtype=np.int64)
    np.add.at(table, (a, b), 1)

    def pairs(counts: np.ndarray) -> float:
        return float((counts * (counts - 1) // 2).sum())

    index, rows, cols = pairs(table), pairs(table.sum(1)), pairs(table.sum(0))
    total = len(a) * (len(a) - 1) / 2
    expected = rows * cols / total if total else 0.0
    maximum = (rows + cols) / 2
    if maximum == expected:
        return 1.0
    return (index - expected) / (maximum - expected)


def grouping_recovery(groups: Sequence[Sequence[int]] | Sequence[int], planted: Sequence[int]) -> float:
    """Mean adjusted Rand index between planted groups and one (``[M]``) or several (``[T, M]``,
    e.g. the last rows of a result's ``trace["groups"]``) group assignments."""
    rows = np.atleast_2d(np.asarray(groups))
    if rows.shape[-1] != len(planted) or rows.ndim != 2 or rows.shape[0] == 0:
        raise ValueError(f"groups must have shape [M] or [T, M] with M={len(planted)}, got {np.shape(groups)}")
    return float(np.mean([adjusted_rand_index(row, planted) for row in rows]))


def make_benchmark(
    num_tasks: int = 20,
    num_groups: int = 4,
    input_dim: int = 16,
    hidden_dim: int | None = None,
    scales: Sequence[float] | None = None,
    conflict: float = 0.5,
    spread: float = 0.1,
    noise: float = 0.1,
    train_size: int = 2000,
    val_size: int = 500,
    test_size: int = 1000,
    data_seed: int = 0,
) -> Benchmark:
    """The synthetic problem as a benchmark; GO4Align's default K is the planted ``num_groups``,
    and the shared width ``hidden_dim`` is ``num_groups`` unless given."""
    problem = make_problem(num_tasks, num_groups, input_dim, scales, conflict, spread, noise, data_seed)
    hidden_dim = num_groups if hidden_dim is None else hidden_dim
    _check_int("hidden_dim", hidden_dim, 1)
    sizes = {"train": train_size, "val": val_size, "test": test_size}
    for split, size in sizes.items():
        _check_int(f"{split}_size", size, 1)
    names = problem.task_names
    streams = {"train": 1, "val": 2, "test": 3}

    def datasets(split: str) -> SyntheticDataset:
        return SyntheticDataset(*problem.sample(sizes[split], streams[split]), names)

    def losses(predictions, targets) -> Tensor:
        prediction = torch.stack([predictions[t] for t in names], 1)
        target = torch.stack([targets[t] for t in names], 1)
        return ((prediction - target) ** 2).mean(0)

    return Benchmark(
        name="synthetic",
        tasks=[Task(t, Metric(f"{t}_mse", higher_is_better=False)) for t in names],
        datasets=datasets,
        model=lambda seed: SyntheticRegression(names, input_dim, hidden_dim),
        losses=losses,
        metrics=lambda: TaskMSE(names),
        protocol=Protocol(
            epochs=20,
            batch_size=100,
            lr=1e-2,
            reporting_rule="last_k_mean:5",
            method_options={"go4align": {"num_groups": num_groups}},
        ),
        options={
            "num_tasks": num_tasks,
            "num_groups": num_groups,
            "input_dim": input_dim,
            "hidden_dim": hidden_dim,
            "scales": problem.scales.tolist(),
            "conflict": conflict,
            "spread": spread,
            "noise": noise,
            "train_size": train_size,
            "val_size": val_size,
            "test_size": test_size,
            "data_seed": data_seed,
        },
    )


def planted_groups(benchmark: Benchmark) -> np.ndarray:
    """The planted group of every task of a synthetic benchmark (redrawn from its options)."""
    if benchmark.name != "synthetic":
        raise ValueError(f"planted_groups needs the synthetic benchmark, got {benchmark.name!r}")
    keys = ("num_tasks", "num_groups", "input_dim", "scales", "conflict", "spread", "noise", "data_seed")
    return make_problem(**{k: benchmark.options[k] for k in keys}).groups
