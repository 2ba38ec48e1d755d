"""The benchmark API: what a multi-task benchmark is, for the built-in ones and for yours.

A :class:`Benchmark` bundles the data (one dataset per split), a seeded model factory, the task
losses, a metric accumulator, the metric directions, an optional single-task (STL) reference and
the training :class:`Protocol`. The trainer (:mod:`go4align.train`) knows nothing else about a
benchmark, so benchmarking your own tasks means building one of these::

    bench = Benchmark(
        name="mine",
        tasks=[Task("age", Metric("age_mae", higher_is_better=False)),
               Task("smile", Metric("smile_acc", higher_is_better=True))],
        datasets=lambda split: my_datasets[split],        # items: (inputs, {task: target})
        model=lambda seed: HardSharing(Encoder(), {"age": nn.Linear(64, 1), "smile": nn.Linear(64, 2)}),
        losses=task_losses({"age": l1, "smile": nn.functional.cross_entropy}),
        metrics=lambda: SampleMean({"age_mae": ("age", abs_error), "smile_acc": ("smile", correct)}),
        protocol=Protocol(epochs=20, batch_size=64, lr=1e-3, reporting_rule="last_k_mean:5"),
    )

Contracts:

* Model: ``model(x)`` returns ``{task: prediction}``; ``model(x, return_representation=True)``
  returns ``(predictions, representation)``, the shared features fed to the task-specific parts
  (or ``None``); ``model.shared_parameters()`` and ``model.task_parameters()`` are disjoint lists
  covering every parameter. :class:`HardSharing` implements it for an encoder and heads.
* Data: a batch is ``(inputs, {task: target})``. Items go through ``collate_fn`` (PyTorch's
  default when ``None``); a dataset that can cut a whole batch at once may offer
  ``get_batch(indices) -> (inputs, targets)``, which the trainer then uses instead of a loader.
* Tasks and metrics: ``losses(predictions, targets)`` is a 1-D tensor in task order; the
  accumulator has ``update(predictions, targets)`` and ``compute() -> {metric: float}``;
  metric names are unique across the benchmark.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from typing import Protocol as TypingProtocol

import torch
from torch import Tensor, nn

__all__ = [
    "Metric",
    "Task",
    "Protocol",
    "Benchmark",
    "HardSharing",
    "MetricAccumulator",
    "SampleMean",
    "TensorTaskDataset",
    "task_losses",
    "check_model",
    "SPLITS",
    "OPTIMIZERS",
    "SCHEDULERS",
    "SELECTIONS",
]

SPLITS = ("train", "val", "test")
OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULERS = ("none", "step", "plateau")
#: How "the best validation epoch" and ReduceLROnPlateau score a validation result (see Protocol).
SELECTIONS = ("delta_m", "mean")


@dataclass(frozen=True)
class Metric:
    """One reported number, e.g. ``Metric("segmentation_miou", higher_is_better=True)``."""

    name: str
    higher_is_better: bool

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"Metric name must be a non-empty str, got {self.name!r}")
        if not isinstance(self.higher_is_better, bool):
            raise ValueError(f"Metric {self.name!r}: higher_is_better must be a bool, got {self.higher_is_better!r}")

    @property
    def direction(self) -> str:
        return "higher" if self.higher_is_better else "lower"


@dataclass(frozen=True)
class Task:
    """A task: its name (the key of predictions and targets) and the metrics reported for it."""

    name: str
    metrics: tuple[Metric, ...]

    def __init__(self, name: str, *metrics: Metric):
        if not isinstance(name, str) or not name or "." in name:
            raise ValueError(f"Task name must be a non-empty str without '.', got {name!r}")
        if not metrics or not all(isinstance(m, Metric) for m in metrics):
            raise ValueError(f"Task {name!r} needs at least one Metric, got {metrics!r}")
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "metrics", tuple(metrics))


def _check_positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


@dataclass(frozen=True)
class Protocol:
    """How a benchmark is trained and reported.

    Args:
        epochs, batch_size: as usual; every epoch is evaluated on val (if any) and test.
        lr: the model's learning rate.
        optimizer: ``"adam"``, ``"adamw"`` or ``"sgd"``; ``optimizer_options`` go to its
            constructor (``weight_decay``, ``momentum``...).
        scheduler: ``"none"``; ``"step"`` (``StepLR``, options ``step_size``, ``gamma``: NYUv2's
            halving after epoch 100 is ``step_size=100, gamma=0.5``); or ``"plateau"``
            (``ReduceLROnPlateau`` on the validation score, options as PyTorch's).
        reporting_rule: ``"last_k_mean:K"`` (mean of the last K epochs' test metrics; NYUv2,
            CityScapes) or ``"best_validation"`` (test metrics at the epoch with the best
            validation score; QM9, CelebA). Never the best test epoch.
        selection: the validation score behind ``best_validation`` and ``plateau``:
            ``"delta_m"`` (Delta-m% of the validation metrics against the STL reference, as
            the QM9 reference code) or ``"mean"`` (the mean of the validation metrics, which
            must all point the same way, as the CelebA reference code's mean F1).
        method_options: default options per method name, under the options of a method spec,
            e.g. ``{"go4align": {"num_groups": 5}}`` for the paper's K on QM9.
        num_workers: data-loader worker processes (exact resume is guaranteed with 0).
        eval_batch_size: batch size of evaluation (default: ``batch_size``).
        train_weighting_parameters: whether the optimiser trains the weighting's own parameters
            (UW's log-variances); ``False`` freezes them at their initial values, as FAMO's
            CelebA trainer (which gives Adam only the model's parameters) did for the published
            UW row.
    """

    epochs: int
    batch_size: int
    lr: float
    optimizer: str = "adam"
    optimizer_options: Mapping[str, Any] = field(default_factory=dict)
    scheduler: str = "none"
    scheduler_options: Mapping[str, Any] = field(default_factory=dict)
    reporting_rule: str = "last_k_mean:10"
    selection: str = "mean"
    method_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    num_workers: int = 0
    eval_batch_size: int | None = None
    train_weighting_parameters: bool = True

    def __post_init__(self):
        _check_positive_int("epochs", self.epochs)
        _check_positive_int("batch_size", self.batch_size)
        if self.eval_batch_size is not None:
            _check_positive_int("eval_batch_size", self.eval_batch_size)
        if (
            isinstance(self.lr, bool)
            or not isinstance(self.lr, (int, float))
            or not (self.lr > 0 and math.isfinite(self.lr))
        ):
            raise ValueError(f"lr must be a finite number > 0, got {self.lr!r}")
        for name, value, choices in (
            ("optimizer", self.optimizer, OPTIMIZERS),
            ("scheduler", self.scheduler, SCHEDULERS),
            ("selection", self.selection, SELECTIONS),
        ):
            if value not in choices:
                raise ValueError(f"{name} must be one of {choices}, got {value!r}")
        k = self.last_k  # validates reporting_rule
        if k is not None and k > self.epochs:
            warnings.warn(
                f"reporting_rule={self.reporting_rule!r} asks for the mean of the last {k} epochs, but the "
                f"protocol trains {self.epochs}: the reported metrics are the mean of all {self.epochs} trained "
                f"epoch(s) instead; give reporting_rule='last_k_mean:K' with K <= {self.epochs}",
                UserWarning,
                stacklevel=3,
            )
        if isinstance(self.num_workers, bool) or not isinstance(self.num_workers, int) or self.num_workers < 0:
            raise ValueError(f"num_workers must be an int >= 0, got {self.num_workers!r}")
        if not isinstance(self.train_weighting_parameters, bool):
            raise ValueError(f"train_weighting_parameters must be a bool, got {self.train_weighting_parameters!r}")
        for name in ("optimizer_options", "scheduler_options", "method_options"):
            if not isinstance(getattr(self, name), Mapping):
                raise ValueError(f"{name} must be a mapping, got {getattr(self, name)!r}")
        for method, options in self.method_options.items():
            if not isinstance(options, Mapping):
                raise ValueError(f"method_options[{method!r}] must be a mapping of options, got {options!r}")
        if "lr" in self.optimizer_options:
            raise ValueError("give the learning rate as Protocol(lr=...), not in optimizer_options")
        if "mode" in self.scheduler_options:
            raise ValueError("scheduler_options cannot set 'mode': the validation score is always lower-is-better")
        # Build both once on a dummy parameter, so that a bad option fails here, not after an epoch.
        self.build_scheduler(self.build_optimizer([torch.zeros(1, requires_grad=True)]))

    def build_optimizer(self, params: Any) -> torch.optim.Optimizer:
        """The optimiser over ``params`` (tensors or param groups) at ``lr``."""
        cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}[self.optimizer]
        try:
            return cls(params, lr=self.lr, **self.optimizer_options)
        except (TypeError, ValueError) as error:
            raise ValueError(
                f"optimizer {self.optimizer!r} rejects optimizer_options={dict(self.optimizer_options)}: {error}"
            ) from error

    def build_scheduler(self, optimizer: torch.optim.Optimizer) -> Any:
        """``None``, ``StepLR`` (stepped every epoch) or ``ReduceLROnPlateau`` (stepped with the
        validation score every epoch)."""
        if self.scheduler == "none":
            if self.scheduler_options:
                raise ValueError(f"scheduler_options={dict(self.scheduler_options)} given with scheduler='none'")
            return None
        cls = (
            torch.optim.lr_scheduler.StepLR if self.scheduler == "step" else torch.optim.lr_scheduler.ReduceLROnPlateau
        )
        options = dict(self.scheduler_options)
        if self.scheduler == "plateau":
            options["mode"] = "min"
        try:
            return cls(optimizer, **options)
        except (TypeError, ValueError) as error:
            raise ValueError(
                f"scheduler {self.scheduler!r} rejects scheduler_options={dict(self.scheduler_options)}: {error}"
            ) from error

    @property
    def last_k(self) -> int | None:
        """K of ``last_k_mean:K``; ``None`` for ``best_validation``."""
        rule = self.reporting_rule
        if rule == "best_validation":
            return None
        if isinstance(rule, str) and rule.startswith("last_k_mean:"):
            k = rule.split(":", 1)[1]
            if k.isdigit() and int(k) >= 1:
                return int(k)
        raise ValueError(f"reporting_rule must be 'last_k_mean:K' (K >= 1) or 'best_validation', got {rule!r}")

    @property
    def needs_validation(self) -> bool:
        return self.reporting_rule == "best_validation" or self.scheduler == "plateau"

    def replace(self, **changes: Any) -> Protocol:
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise ValueError(
                f"unknown protocol field(s) {unknown}; valid: {[f.name for f in dataclasses.fields(self)]}"
            )
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}


def _plain(value: Any) -> Any:
    """Mappings to dicts, recursively, so that a protocol is JSON-serialisable."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


class MetricAccumulator(TypingProtocol):
    def update(self, predictions: Mapping[str, Tensor], targets: Mapping[str, Tensor]) -> None: ...

    def compute(self) -> dict[str, float]: ...


@dataclass(frozen=True, eq=False)
class Benchmark:
    """A multi-task benchmark: data, model, tasks, metrics and protocol.

    Args:
        name: its name in results files.
        tasks: the tasks in loss order.
        datasets: ``split -> dataset`` for each split in ``splits``; called once per split
            (the datasets are kept).
        model: ``seed -> model`` following the model contract; torch's global RNG is seeded with
            ``seed`` just before the call.
        losses: ``(predictions, targets) -> Tensor[M]`` in task order.
        metrics: ``() -> accumulator`` (``update``, ``compute``) over the metrics of ``tasks``.
        protocol: see :class:`Protocol`.
        splits: which of ``("train", "val", "test")`` exist; ``train`` and ``test`` are required.
        stl_reference: published single-task values per metric, or ``None``.
        collate_fn: turns a list of items into a batch (PyTorch's default if ``None``).
        options: the options the benchmark was built with (recorded in ``grid.json``).
    """

    name: str
    tasks: Sequence[Task]
    datasets: Callable[[str], Any]
    model: Callable[[int], nn.Module]
    losses: Callable[[Mapping[str, Tensor], Mapping[str, Tensor]], Tensor]
    metrics: Callable[[], MetricAccumulator]
    protocol: Protocol
    splits: Sequence[str] = SPLITS
    stl_reference: Mapping[str, float] | None = None
    collate_fn: Callable[[list], Any] | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    _cache: dict = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"Benchmark name must be a non-empty str, got {self.name!r}")
        object.__setattr__(self, "tasks", tuple(self.tasks))
        object.__setattr__(self, "splits", tuple(self.splits))
        if not self.tasks or not all(isinstance(t, Task) for t in self.tasks):
            raise ValueError(f"Benchmark {self.name!r}: tasks must be a non-empty sequence of Task, got {self.tasks!r}")
        names = [t.name for t in self.tasks]
        if len(set(names)) != len(names):
            raise ValueError(f"Benchmark {self.name!r}: task names must be unique, got {names}")
        metrics = [m.name for t in self.tasks for m in t.metrics]
        if len(set(metrics)) != len(metrics):
            raise ValueError(f"Benchmark {self.name!r}: metric names must be unique across tasks, got {metrics}")
        bad = [s for s in self.splits if s not in SPLITS]
        if bad or "train" not in self.splits or "test" not in self.splits:
            raise ValueError(
                f"Benchmark {self.name!r}: splits must include 'train' and 'test' among {SPLITS}, got {self.splits}"
            )
        if not isinstance(self.protocol, Protocol):
            raise ValueError(f"Benchmark {self.name!r}: protocol must be a Protocol, got {self.protocol!r}")
        if self.protocol.needs_validation and "val" not in self.splits:
            raise ValueError(
                f"Benchmark {self.name!r} has no 'val' split, but its protocol needs one "
                f"(reporting_rule={self.protocol.reporting_rule!r}, scheduler={self.protocol.scheduler!r})"
            )
        if self.stl_reference is not None:
            missing = sorted(set(metrics) - set(self.stl_reference))
            if missing:
                raise ValueError(f"Benchmark {self.name!r}: stl_reference lacks metric(s) {missing}")
            object.__setattr__(self, "stl_reference", {m: float(self.stl_reference[m]) for m in metrics})
        problem = self._selection_problem()
        if problem is not None:
            raise ValueError(f"Benchmark {self.name!r}: {problem}")

    def _selection_problem(self) -> str | None:
        """Why the protocol cannot score validation epochs on this benchmark, with every way out
        that works here, or ``None``. One message for both selections, so that a new data set
        without a single-task reference gets one consistent answer."""
        protocol = self.protocol
        if not protocol.needs_validation:
            return None
        same_way = len({m.higher_is_better for t in self.tasks for m in t.metrics}) == 1
        if protocol.selection == "delta_m" and self.stl_reference is None:
            why = "selection='delta_m' needs an stl_reference (single-task values of every metric), and there is none"
        elif protocol.selection == "mean" and not same_way:
            why = "selection='mean' needs metrics that all point the same way, and these point both ways"
        else:
            return None
        users = []
        if protocol.reporting_rule == "best_validation":
            users.append("reporting_rule='best_validation'")
        if protocol.scheduler == "plateau":
            users.append("scheduler='plateau'")
        ways = []
        if protocol.reporting_rule == "best_validation":
            ways.append(
                "report reporting_rule='last_k_mean:K' (the mean of the last K epochs' test metrics; "
                "it needs no validation score)"
            )
        if protocol.scheduler == "plateau":
            ways.append("use scheduler='step' or 'none'")
        if protocol.selection == "delta_m" and same_way:
            ways.append("use selection='mean'")
        ways.append(
            f"{'keep' if protocol.selection == 'delta_m' else 'use'} selection='delta_m' and give "
            "Benchmark(stl_reference={metric: value, ...}); to get the values, "
            "train single-task models with `go4align bench ... --methods stl` (or run_grid(..., ['stl'], ...)) "
            "and take the 'STL reference' row of its report"
        )
        verb = "needs" if len(users) == 1 else "need"
        return f"{' and '.join(users)} {verb} a validation score, but {why}. Either " + "; or ".join(ways) + "."

    @property
    def task_names(self) -> list[str]:
        return [t.name for t in self.tasks]

    @property
    def num_tasks(self) -> int:
        return len(self.tasks)

    @property
    def directions(self) -> dict[str, str]:
        return {m.name: m.direction for t in self.tasks for m in t.metrics}

    def dataset(self, split: str) -> Any:
        if split not in self.splits:
            raise ValueError(f"Benchmark {self.name!r} has no split {split!r}; it has {self.splits}")
        if split not in self._cache:
            self._cache[split] = self.datasets(split)
        return self._cache[split]

    def build_model(self, seed: int) -> nn.Module:
        torch.manual_seed(seed)
        model = self.model(seed)
        check_model(model)
        return model

    def with_protocol(self, **changes: Any) -> Benchmark:
        """The same benchmark (sharing its loaded data) under a changed protocol."""
        changed = dataclasses.replace(self, protocol=self.protocol.replace(**changes))
        object.__setattr__(changed, "_cache", self._cache)
        return changed


def check_model(model: nn.Module) -> None:
    """Raise a ``ValueError`` unless ``model`` splits its parameters as the contract says."""
    for name in ("shared_parameters", "task_parameters"):
        if not callable(getattr(model, name, None)):
            raise ValueError(f"{type(model).__name__} lacks {name}(); see go4align.benchmarks.api (the model contract)")
    shared = {id(p) for p in model.shared_parameters()}
    task = {id(p) for p in model.task_parameters()}
    every = {id(p) for p in model.parameters()}
    if shared & task:
        raise ValueError(f"{type(model).__name__}: shared_parameters() and task_parameters() overlap")
    if shared | task != every:
        raise ValueError(
            f"{type(model).__name__}: shared_parameters() and task_parameters() must cover all "
            f"{len(every)} parameters, they cover {len((shared | task) & every)}"
        )


class HardSharing(nn.Module):
    """The model contract for a shared encoder and one head per task.

    ``encoder(x)`` is the shared representation; ``heads[task](representation)`` the task's
    prediction. Shared parameters are the encoder's, task parameters the heads'.
    """

    def __init__(self, encoder: nn.Module, heads: Mapping[str, nn.Module]):
        super().__init__()
        if not isinstance(encoder, nn.Module):
            raise TypeError(f"encoder must be an nn.Module, got {type(encoder).__name__}")
        if not heads or not all(isinstance(h, nn.Module) for h in heads.values()):
            raise TypeError(f"heads must be a non-empty mapping of task name to nn.Module, got {heads!r}")
        self.encoder = encoder
        self.heads = nn.ModuleDict(heads)
        self.task_names = list(heads)

    def forward(self, x: Any, return_representation: bool = False):
        representation = self.encoder(x)
        predictions = {task: self.heads[task](representation) for task in self.task_names}
        if return_representation:
            return predictions, representation
        return predictions

    def shared_parameters(self) -> list[nn.Parameter]:
        return list(self.encoder.parameters())

    def task_parameters(self) -> list[nn.Parameter]:
        return list(self.heads.parameters())


def task_losses(
    functions: Mapping[str, Callable[[Tensor, Tensor], Tensor]],
) -> Callable[[Mapping[str, Tensor], Mapping[str, Tensor]], Tensor]:
    """``losses(predictions, targets)`` from one scalar loss function per task, in task order."""
    order = list(functions)

    def losses(predictions: Mapping[str, Tensor], targets: Mapping[str, Tensor]) -> Tensor:
        return torch.stack([functions[t](predictions[t], targets[t]) for t in order])

    return losses


class SampleMean:
    """Metrics that are means over samples of a per-sample value.

    ``metrics`` maps a metric name to ``(task, fn)`` where ``fn(prediction, target)`` returns
    one value per sample (e.g. 1.0 for a correct class): accuracy, mean absolute error...
    """

    def __init__(self, metrics: Mapping[str, tuple[str, Callable[[Tensor, Tensor], Tensor]]]):
        self.metrics = dict(metrics)
        self.sums = {name: 0.0 for name in self.metrics}
        self.count = 0

    def update(self, predictions: Mapping[str, Tensor], targets: Mapping[str, Tensor]) -> None:
        n = None
        for name, (task, fn) in self.metrics.items():
            values = fn(predictions[task], targets[task])
            n = values.shape[0]
            self.sums[name] += float(values.double().sum())
        self.count += n or 0

    def compute(self) -> dict[str, float]:
        if self.count == 0:
            raise ValueError("SampleMean.compute() before any update()")
        return {name: total / self.count for name, total in self.sums.items()}


class TensorTaskDataset(torch.utils.data.Dataset):
    """In-memory data: an inputs tensor and one targets tensor per task, first dim = samples.

    ``transform`` (optional) maps a batch of stored inputs to model inputs (e.g. uint8 images
    to floats), so that large image sets can be stored compactly.
    """

    def __init__(
        self, inputs: Tensor, targets: Mapping[str, Tensor], transform: Callable[[Tensor], Tensor] | None = None
    ):
        n = inputs.shape[0]
        bad = {t: tuple(v.shape) for t, v in targets.items() if v.shape[0] != n}
        if bad:
            raise ValueError(f"targets must have {n} rows like the inputs, got shapes {bad}")
        self.inputs, self.targets, self.transform = inputs, dict(targets), transform

    def __len__(self) -> int:
        return self.inputs.shape[0]

    def __getitem__(self, index: int):
        x, y = self.get_batch(torch.tensor([index]))
        return x[0], {t: v[0] for t, v in y.items()}

    def get_batch(self, indices: Tensor | Sequence[int]):
        indices = torch.as_tensor(indices, dtype=torch.int64)
        x = self.inputs[indices]
        if self.transform is not None:
            x = self.transform(x)
        return x, {t: v[indices] for t, v in self.targets.items()}
