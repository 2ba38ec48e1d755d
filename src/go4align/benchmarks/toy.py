"""The two-objective toy problem of the Nash-MTL and FAMO repositories (a modification of CAGrad's).

The "model" is a point ``x = (x1, x2)``; the two losses are, with ``c1 = max(tanh(x2 / 2), 0)``
and ``c2 = max(tanh(-x2 / 2), 0)`` (at most one of them is non-zero)::

    f1 = scale * [ c1 * (log(max(|0.5(-x1 - 7) - tanh(-x2)|, 5e-6)) + 6)
                 + c2 * (((-x1 + 7)^2 + 0.1 (-x2 - 8)^2) / 10 - 20) ]
    f2 =           c1 * (log(max(|0.5(-x1 + 3) + tanh(-x2) + 2|, 5e-6)) + 6)
                 + c2 * (((-x1 - 7)^2 + 0.1 (-x2 - 8)^2) / 10 - 20)

with ``scale = 0.1`` (the repositories' default), Adam with lr 1e-3 on ``x``, 35,000 steps
(Nash-MTL; FAMO ran 50,000) from the five initial points :data:`INITS`. The Pareto front is close
to ``x2 = -8.3552, x1 in [-7, 7]`` (the line the repositories draw).

The losses can be negative (``f >= (-20 scale, -20)``), which scale-based methods (GO4Align, FAMO,
SI) cannot take; following FAMO's toy run (its ``set_min_losses(-21 scale, -21)``), the optimised
losses are ``f - (-21 scale, -21)``, positive everywhere. Linear scalarisation is unaffected.
Reported metrics are the unshifted ``f1``, ``f2``.

:func:`trajectory` runs one method from one point for plots; :func:`make_benchmark` is the
same problem as a :class:`~go4align.benchmarks.api.Benchmark` for the trainer, where seed ``k``
starts from ``INITS[k % 5]`` (the problem has no data, so the seed chooses the start).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from .api import Benchmark, Metric, Protocol, SampleMean, Task, TensorTaskDataset

__all__ = [
    "INITS",
    "PARETO_X2",
    "toy_losses",
    "lower_bounds",
    "pareto_front",
    "trajectory",
    "trajectories",
    "plot_trajectories",
    "ToyPoint",
    "make_benchmark",
]

LOWER = 5e-6
INITS = ((-8.5, 7.5), (0.0, 0.0), (9.0, 9.0), (-7.5, -0.5), (9.0, -1.0))
PARETO_X2 = -8.3552
TASKS = ("f1", "f2")


def toy_losses(x: Tensor, scale: float = 0.1) -> Tensor:
    """``(f1, f2)`` at points ``x`` of shape ``[..., 2]``; returns shape ``[..., 2]``."""
    if x.shape[-1] != 2:
        raise ValueError(f"toy points must have a last dimension of 2, got shape {tuple(x.shape)}")
    x1, x2 = x[..., 0], x[..., 1]
    c1 = torch.clamp(torch.tanh(x2 * 0.5), min=0)
    c2 = torch.clamp(torch.tanh(-x2 * 0.5), min=0)
    f1_log = torch.clamp((0.5 * (-x1 - 7) - torch.tanh(-x2)).abs(), min=LOWER).log() + 6
    f2_log = torch.clamp((0.5 * (-x1 + 3) + torch.tanh(-x2) + 2).abs(), min=LOWER).log() + 6
    f1_sq = ((-x1 + 7).pow(2) + 0.1 * (-x2 - 8).pow(2)) / 10 - 20
    f2_sq = ((-x1 - 7).pow(2) + 0.1 * (-x2 - 8).pow(2)) / 10 - 20
    f1 = (f1_log * c1 + f1_sq * c2) * scale
    f2 = f2_log * c1 + f2_sq * c2
    return torch.stack([f1, f2], dim=-1)


def lower_bounds(scale: float = 0.1) -> Tensor:
    """FAMO's minimum losses for the toy problem: strictly below ``f`` everywhere."""
    return torch.tensor([-21.0 * scale, -21.0])


def pareto_front(num: int = 1000, scale: float = 0.1) -> Tensor:
    """Loss pairs along the repositories' Pareto line, shape ``[num, 2]``, float64."""
    x1 = torch.linspace(-7, 7, num, dtype=torch.float64)
    return toy_losses(torch.stack([x1, torch.full_like(x1, PARETO_X2)], dim=-1), scale)


def trajectory(method, init: Sequence[float], steps: int = 35000, lr: float = 1e-3, scale: float = 0.1) -> Tensor:
    """Optimise ``x`` from ``init`` with ``method`` (a fresh weighting) and Adam; return the
    ``[steps + 1, 2]`` points visited (float32, as the reference code)."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be an int >= 0, got {steps!r}")
    x = torch.tensor(init, dtype=torch.float32).requires_grad_(True)
    groups = [{"params": [x], "lr": lr}]
    method_params = [p for p in method.parameters() if p.requires_grad]
    if method_params:
        groups.append({"params": method_params, "lr": getattr(method, "lr", lr)})
    optimizer = torch.optim.Adam(groups)
    shift = lower_bounds(scale)
    points = [x.detach().clone()]
    for _ in range(steps):
        optimizer.zero_grad()
        method.backward(toy_losses(x, scale) - shift, shared_parameters=[x])
        optimizer.step()
        method.after_step(lambda: toy_losses(x, scale).detach() - shift)
        points.append(x.detach().clone())
    return torch.stack(points)


def trajectories(
    make_method: Callable[[], object], inits: Sequence[Sequence[float]] = INITS, **options
) -> list[Tensor]:
    """One :func:`trajectory` per initial point, each with a fresh ``make_method()``."""
    return [trajectory(make_method(), init, **options) for init in inits]


def plot_trajectories(paths: Sequence[Tensor], scale: float = 0.1, ax=None, title: str | None = None):
    """The classic picture in loss space: the Pareto front, the starts, the paths. Needs matplotlib."""
    try:
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise ImportError("plot_trajectories needs matplotlib: pip install 'go4align[plot]'") from error
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 5))
    front = pareto_front(scale=scale).numpy()
    ax.plot(front[:, 0], front[:, 1], "-", linewidth=6, color="#72727A", label="Pareto front")
    colours = plt.get_cmap("magma_r")
    for path in paths:
        values = toy_losses(path.double(), scale).numpy()
        ax.scatter(values[:, 0], values[:, 1], c=range(len(values)), cmap=colours, s=3, zorder=9)
        ax.scatter(values[:1, 0], values[:1, 1], color="k", s=60, zorder=10)
    ax.set_xlabel(r"$f_1$")
    ax.set_ylabel(r"$f_2$")
    if title:
        ax.set_title(title)
    return ax


class ToyPoint(nn.Module):
    """The toy problem in the model contract: the point is the shared parameter, there are no
    task-specific parameters and no representation; inputs only give the batch size."""

    def __init__(self, init: Sequence[float], scale: float = 0.1):
        super().__init__()
        self.x = nn.Parameter(torch.tensor(init, dtype=torch.float32))
        self.scale = scale

    def forward(self, inputs: Tensor, return_representation: bool = False):
        f = toy_losses(self.x, self.scale)
        predictions = {task: f[m].expand(inputs.shape[0]) for m, task in enumerate(TASKS)}
        return (predictions, None) if return_representation else predictions

    def shared_parameters(self) -> list[nn.Parameter]:
        return [self.x]

    def task_parameters(self) -> list[nn.Parameter]:
        return []


def _value(prediction: Tensor, target: Tensor) -> Tensor:
    return prediction


def make_benchmark(scale: float = 0.1, steps_per_epoch: int = 1000) -> Benchmark:
    """The toy problem as a benchmark: 35 epochs of ``steps_per_epoch`` Adam steps (lr 1e-3; the
    reference's 35,000 steps by default); metrics ``f1``, ``f2`` at the end of each epoch."""
    if isinstance(steps_per_epoch, bool) or not isinstance(steps_per_epoch, int) or steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch must be a positive int, got {steps_per_epoch!r}")
    shift = lower_bounds(scale)

    def datasets(split: str) -> TensorTaskDataset:
        n = steps_per_epoch if split == "train" else 1
        return TensorTaskDataset(torch.zeros(n, 0), {task: torch.zeros(n) for task in TASKS})

    def losses(predictions, targets) -> Tensor:
        return torch.stack([predictions[task].mean() for task in TASKS]) - shift

    return Benchmark(
        name="toy",
        tasks=[Task(task, Metric(task, higher_is_better=False)) for task in TASKS],
        datasets=datasets,
        model=lambda seed: ToyPoint(INITS[seed % len(INITS)], scale),
        losses=losses,
        metrics=lambda: SampleMean({task: (task, _value) for task in TASKS}),
        protocol=Protocol(epochs=35, batch_size=1, lr=1e-3, reporting_rule="last_k_mean:1"),
        splits=("train", "test"),
        options={"scale": scale, "steps_per_epoch": steps_per_epoch},
    )
