"""The 11 QM9 tasks: names, units, per-task losses, the MAE accumulator and the STL reference.

Targets live in the reference units of torch_geometric's QM9 (eV for energies) and are standardised
with the training split's mean and standard deviation; the model predicts standardised values. The
paper's table reports energies in meV, so MAE is de-standardised and then multiplied by
`REPORT_SCALE` (1000 for the seven energies, 1 otherwise).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from go4align import published

# Order of torch_geometric's targets 0, 1, 2, 3, 5, 6, 12, 13, 14, 15, 11 as used by Nash-MTL/FAMO/
# GO4Align. "R2" stands for <R2> and "c_v" for the heat capacity; the names are identifiers so they can
# serve as dictionary keys, module names and file names.
TASK_NAMES: tuple[str, ...] = (
    "mu",
    "alpha",
    "eps_HOMO",
    "eps_LUMO",
    "R2",
    "ZPVE",
    "U0",
    "U",
    "H",
    "G",
    "c_v",
)
NUM_TASKS = len(TASK_NAMES)

TARGET_UNITS: dict[str, str] = {
    "mu": "D",
    "alpha": "a0^3",
    "eps_HOMO": "eV",
    "eps_LUMO": "eV",
    "R2": "a0^2",
    "ZPVE": "eV",
    "U0": "eV",
    "U": "eV",
    "H": "eV",
    "G": "eV",
    "c_v": "cal/(mol K)",
}
REPORT_SCALE: dict[str, float] = {task: (1000.0 if unit == "eV" else 1.0) for task, unit in TARGET_UNITS.items()}
REPORT_UNITS: dict[str, str] = {task: ("meV" if unit == "eV" else unit) for task, unit in TARGET_UNITS.items()}

METRIC_NAMES: tuple[str, ...] = tuple(f"{task}_mae" for task in TASK_NAMES)
METRIC_HIGHER_IS_BETTER: dict[str, bool] = {name: False for name in METRIC_NAMES}

# The published single-task reference (reported units), keyed by METRIC_NAMES.
STL_REFERENCE: dict[str, float] = published.QM9["stl"]
STL_REFERENCE_SOURCE = published.QM9["stl_source"]


@dataclass(frozen=True)
class TargetStats:
    """Per-task mean and standard deviation (reference units) used to standardise targets."""

    mean: Tensor
    std: Tensor

    def __post_init__(self) -> None:
        for name in ("mean", "std"):
            value = getattr(self, name)
            if value.shape != (NUM_TASKS,):
                raise ValueError(f"TargetStats.{name} must have shape ({NUM_TASKS},), got {tuple(value.shape)}")
        if not bool((self.std > 0).all()):
            raise ValueError(f"TargetStats.std must be positive, got {self.std.tolist()}")

    @classmethod
    def from_targets(cls, targets: Tensor) -> TargetStats:
        """Statistics of a [N, 11] target matrix (unbiased std, as torch's `std`)."""
        targets = torch.as_tensor(targets, dtype=torch.float64)
        return cls(mean=targets.mean(dim=0), std=targets.std(dim=0))

    def standardise(self, targets: Tensor) -> Tensor:
        return (targets - self.mean.to(targets)) / self.std.to(targets)

    def destandardise(self, standardised: Tensor) -> Tensor:
        return standardised * self.std.to(standardised) + self.mean.to(standardised)

    def state_dict(self) -> dict[str, list[float]]:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_state_dict(cls, state: Mapping[str, list[float]]) -> TargetStats:
        return cls(
            mean=torch.tensor(state["mean"], dtype=torch.float64), std=torch.tensor(state["std"], dtype=torch.float64)
        )


def _check_tasks(mapping: Mapping[str, Tensor], what: str) -> None:
    missing = [task for task in TASK_NAMES if task not in mapping]
    if missing:
        raise KeyError(f"{what} lacks the QM9 tasks {missing}; got keys {sorted(mapping)}")


def losses(predictions: Mapping[str, Tensor], targets: Mapping[str, Tensor]) -> Tensor:
    """Per-task mean squared error on standardised targets, as a Tensor[11] in `TASK_NAMES` order."""
    _check_tasks(predictions, "predictions")
    _check_tasks(targets, "targets")
    return torch.stack([F.mse_loss(predictions[task], targets[task]) for task in TASK_NAMES])


class QM9Metrics:
    """Accumulates the mean absolute error per task in the reported units (meV for energies).

    `update` takes standardised predictions and targets (as the model and the data loader give them);
    the absolute error is de-standardised with the training std (the mean cancels) and scaled by
    `REPORT_SCALE`. `compute` returns `{"<task>_mae": value}` over everything seen since `reset`.
    All metrics are lower-is-better (`METRIC_HIGHER_IS_BETTER`).
    """

    def __init__(self, stats: TargetStats) -> None:
        self.stats = stats
        scale = torch.tensor([REPORT_SCALE[task] for task in TASK_NAMES], dtype=torch.float64)
        self._unit_factor = stats.std.to(torch.float64) * scale
        self.reset()

    def __repr__(self) -> str:
        return f"QM9Metrics(stats={self.stats.state_dict()})"

    def reset(self) -> None:
        self._abs_error_sum = torch.zeros(NUM_TASKS, dtype=torch.float64)
        self._count = 0

    def update(self, predictions: Mapping[str, Tensor], targets: Mapping[str, Tensor]) -> None:
        _check_tasks(predictions, "predictions")
        _check_tasks(targets, "targets")
        errors = torch.stack(
            [(predictions[task].detach() - targets[task]).abs().to("cpu", torch.float64) for task in TASK_NAMES]
        )
        self._abs_error_sum += errors.sum(dim=1) * self._unit_factor
        self._count += errors.shape[1]

    def compute(self) -> dict[str, float]:
        if self._count == 0:
            raise RuntimeError("QM9Metrics.compute() called before any update()")
        mae = self._abs_error_sum / self._count
        return dict(zip(METRIC_NAMES, mae.tolist()))
