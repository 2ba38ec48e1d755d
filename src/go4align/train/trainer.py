"""One training run, (benchmark, method, seed), driven only through the weighting protocol.

The run is put together from parts that each do one thing and can be used on their own:

* :class:`~go4align.train.step.TrainingStep`, one step: ``zero_grad``; predictions and shared
  representation; the task losses; ``weighting.backward(losses, shared_parameters=...,
  shared_representation=...)``; ``optimizer.step()``; ``weighting.after_step(closure)`` where
  ``closure`` recomputes the losses of the same batch without gradients;
* :func:`~go4align.train.evaluation.evaluate`, the benchmark's metrics on one split;
* :class:`~go4align.train.state.RunState`, where the run stands (epoch, steps, the epoch's loss
  sums, the history, skipped steps);
* :class:`~go4align.train.run_checkpoint.RunCheckpoint`, saving and restoring all of it.

:class:`Trainer` runs them: every step, the step, then the run's bookkeeping (the state's
counts, the step timer, and every ``trace_every``-th step the trace); every epoch,
``weighting.end_epoch()``, evaluation on val (if the benchmark has it) and test, the scheduler
step, a checkpoint and ``result.json``. Callbacks see a :class:`StepInfo` after every step.

Exact resume: everything that the rest of a run depends on is in ``checkpoint.pt`` (model,
optimiser, scheduler, weighting state, the python/numpy/torch RNG states, the data-order
generator's state at the start of the epoch, the position in the epoch, the running loss sums,
the history and the trace), written atomically every ``checkpoint_every`` steps and at each epoch
end. A run restarted from it redraws the epoch's order, skips the batches already done and ends
with bit-identical parameters and metrics (on the CPU, with the same number of torch threads,
and with ``num_workers=0``: with worker processes, a resumed epoch hands its remaining batches
to the workers in another rotation, so random augmentation drawn inside the workers would not
repeat). Checkpoints hold tensors and plain values only, are verified against the checksums and
the run identity in ``checkpoint.json`` before use, and are loaded without running code
(:mod:`go4align.train.checkpoint`); a damaged newest checkpoint falls back to the previous one.

Non-finite losses (``nonfinite``): the weighting's check (or the trainer's, for a weighting built
with ``validate=False``) finds them before any gradient or state changes. ``"raise"`` (default)
raises :class:`~go4align.weighting.NonFiniteLossError` naming the tasks and the step; ``"skip"``
drops the step (no optimiser step, no weighting update, nothing added to the epoch's losses)
and counts it in ``result.json``'s ``skipped_steps``. A NaN never reaches the model silently.

Distributed (``torchrun``, inside :func:`~go4align.train.placement.distributed`): the model is
wrapped in ``DistributedDataParallel``, each rank trains on its shard of every global batch (the
protocol's ``batch_size`` stays the global batch size), the weighting sees rank-averaged losses,
and gradient-oriented methods (``reduces_gradients``) run their forward and backward inside
``no_sync()`` and average the gradients themselves (``docs/distributed.md``). Only rank 0 writes
checkpoints and results and prints; every rank evaluates the whole split. A resumed distributed
run restores rank 0's random generators on every rank, so it is exact only when the ranks draw
nothing of their own (no dropout or augmentation).
"""

from __future__ import annotations

import functools
import math
import random
import statistics
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from go4align.benchmarks.api import Benchmark
from go4align.result_file import RESULT_FILE, write_result
from go4align.weighting import NonFiniteLossError, Weighting

from . import provenance
from .checkpoint import remove_stale_temporaries
from .cost import StepTimer
from .data import iterate_batches
from .evaluation import evaluate
from .placement import PeakMemory, Placement
from .results import Trace, summarise, validation_score
from .run_checkpoint import RunCheckpoint
from .spec import MethodSpec
from .state import RunState
from .step import NONFINITE, TrainingStep

__all__ = ["StepInfo", "EpochInfo", "Trainer", "train_run", "param_groups", "NONFINITE"]


@dataclass(frozen=True)
class StepInfo:
    """What a step callback sees, after the step (and its checkpoint, if one was due)."""

    epoch: int  # 0-based epoch of the step
    step_in_epoch: int  # steps done in this epoch
    global_step: int  # steps done in the run
    losses: Tensor  # this step's task losses, detached (averaged over ranks)
    run_dir: Path
    skipped: bool = False  # the losses were not finite and nonfinite="skip" dropped the step
    # the weighting's ``diagnostics`` of this step (detached, on the device; empty when skipped)
    diagnostics: Mapping[str, Tensor] = field(default_factory=dict)


@dataclass(frozen=True)
class EpochInfo:
    """What a callback's optional ``end_epoch`` method sees after an epoch (its evaluation,
    checkpoint and ``result.json`` written)."""

    epoch: int  # epochs done (the 1-based number of this one)
    epochs: int  # the protocol's number of epochs
    global_step: int  # steps done in the run
    entry: dict  # this epoch's entry of result.json's ``epochs``: train_losses, val, test, time_s
    run_dir: Path


def param_groups(model: nn.Module, weighting: Weighting, *, train_weighting: bool = True) -> list[dict]:
    """The optimiser's parameter groups: the model's parameters, then the weighting's trainable
    ones (UW's log-variances), one group per module of the weighting that holds some, at that
    module's own learning rate when it has a numeric ``lr`` attribute (UW: 0.025, the reference's
    ``--method-params-lr``), else at the protocol's.

    ``train_weighting=False`` (``Protocol.train_weighting_parameters``) leaves the weighting's
    parameters out and freezes them (``requires_grad=False``) at their initial values, as FAMO's
    CelebA trainer, whose Adam gets only the model's parameters, did for the published UW row.
    """
    groups = [{"params": list(model.parameters())}]
    for module in weighting.modules():
        own = [p for p in module.parameters(recurse=False) if p.requires_grad]
        if not own:
            continue
        if not train_weighting:
            for parameter in own:
                parameter.requires_grad_(False)
            continue
        group: dict[str, Any] = {"params": own}
        lr = getattr(module, "lr", None)
        if isinstance(lr, (int, float)) and not isinstance(lr, bool):
            group["lr"] = float(lr)
        groups.append(group)
    return groups


def _positive_or_none(value: Any, name: str) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"{name} must be a positive int or None, got {value!r}")


class Trainer:
    """Train one run in ``run_dir`` (resuming from its checkpoint if there is one).

    Args:
        benchmark: the :class:`~go4align.benchmarks.api.Benchmark` with its protocol.
        method: the method spec (its label and effective options go into the results).
        seed: seeds python, numpy, torch, the model's initialisation and the data order.
        run_dir: where ``checkpoint.pt`` and ``result.json`` go.
        device: ``"cpu"``, ``"cuda"``...
        checkpoint_every: also checkpoint every this many steps (``None``: at epoch ends only).
        callbacks: called with a :class:`StepInfo` after every step; those with an ``end_epoch``
            method also get an :class:`EpochInfo` after every epoch. An exception stops the run.
        progress: ``True`` prints one line per epoch (losses, test metrics, time); a callable
            receives each such line instead (a grid's display counts epochs with it).
        weighting: a prebuilt weighting instead of ``method.build`` (the STL runs).
        focus_task: rank epochs by this task's metrics only (an STL run's own task).
        nonfinite: ``"raise"`` (default) or ``"skip"``: what a NaN or infinite loss does (see
            the module docstring).
        trace_every: record the weighting's diagnostics in ``result.json``'s ``trace`` every
            this many steps, GO4Align's smooth alignment and indicators included (1: every
            step, in full detail); ``None`` (default): every
            :data:`~go4align.train.results.TRACE_EVERY` steps, at most 500 points a run.

    After :meth:`fit`, ``model`` (never the DDP wrapper) and ``weighting`` are the trained
    objects, and ``state`` the :class:`~go4align.train.state.RunState`.
    """

    def __init__(
        self,
        benchmark: Benchmark,
        method: MethodSpec,
        seed: int,
        run_dir: str | Path,
        *,
        device: str | torch.device = "cpu",
        checkpoint_every: int | None = None,
        callbacks: Iterable[Callable[[StepInfo], None]] = (),
        progress: bool | Callable[[str], None] = True,
        weighting: Weighting | None = None,
        focus_task: str | None = None,
        nonfinite: str = "raise",
        trace_every: int | None = None,
    ):
        if nonfinite not in NONFINITE:
            raise ValueError(f"nonfinite must be one of {NONFINITE}, got {nonfinite!r}")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be an int >= 0, got {seed!r}")
        _positive_or_none(checkpoint_every, "checkpoint_every")
        _positive_or_none(trace_every, "trace_every")
        if focus_task is not None and focus_task not in benchmark.task_names:
            raise ValueError(f"focus_task must be one of {benchmark.task_names}, got {focus_task!r}")
        self.benchmark, self.method, self.seed = benchmark, method, seed
        self.protocol = benchmark.protocol
        self.run_dir = Path(run_dir)
        self.placement = Placement(device)
        self.checkpoint_every, self.trace_every, self.nonfinite = checkpoint_every, trace_every, nonfinite
        self.callbacks = list(callbacks)
        self.progress = progress if self.placement.rank == 0 else False
        self.focus_task = focus_task
        self.options = method.effective_options(self.protocol.method_options) if weighting is None else {}
        self.weighting = (
            weighting if weighting is not None else method.build(benchmark.num_tasks, self.protocol.method_options)
        )
        tasks = [t for t in benchmark.tasks if focus_task in (None, t.name)]
        self.selection_metrics = [m.name for t in tasks for m in t.metrics]
        self.state: RunState | None = None

    @property
    def global_step(self) -> int | None:
        """Steps done in the run; ``None`` before :meth:`fit` has set the run up."""
        return None if self.state is None else self.state.global_step

    # -- identity of a run, checked when resuming ----------------------------------------------
    def identity(self) -> dict:
        return {
            "benchmark": self.benchmark.name,
            "benchmark_options": dict(self.benchmark.options),
            "protocol": self.protocol.to_dict(),
            "tasks": self.benchmark.task_names,
            "method_label": self.method.label,
            "method_options": self.options,
            "weighting": repr(self.weighting),
            "seed": self.seed,
        }

    # -- the run ---------------------------------------------------------------------------------
    def fit(self) -> dict:
        """Train every remaining epoch; returns (and writes) ``result.json``."""
        try:
            self._setup()
            result = None
            while self.state.epoch < self.protocol.epochs:
                self.train_epoch()
                self.weighting.end_epoch()
                self.end_epoch()
                self.save_checkpoint()
                result = self._write_result()
                self._end_epoch_callbacks()
            if result is None:  # nothing left to train: written again, with this process's provenance
                result = self._write_result()
            # every rank leaves with the files written, so all skip the same completed runs later
            self.placement.barrier()
        finally:
            self.net = None  # drop the DDP wrapper: it must not outlive the process group
        return result

    def _setup(self) -> None:
        """Build the model, optimiser and scheduler from the seed, then resume if a checkpoint exists."""
        bench, protocol, place = self.benchmark, self.protocol, self.placement
        random.seed(self.seed)
        np.random.seed(self.seed)
        # Before the model is placed, so that the run's own parameters count and earlier runs' do not.
        self.memory = PeakMemory(place.device)
        self.model = place.model(bench.build_model(self.seed))
        self.net = place.wrap(self.model)  # what the training forward runs through
        self.weighting = place.module(self.weighting)
        self.optimizer = protocol.build_optimizer(
            param_groups(self.model, self.weighting, train_weighting=protocol.train_weighting_parameters)
        )
        self.scheduler = protocol.build_scheduler(self.optimizer)
        self.step = TrainingStep(
            self.model, self.weighting, self.optimizer, bench.losses, place, net=self.net, nonfinite=self.nonfinite
        )
        self.train_set = bench.dataset("train")
        self.data_order = torch.Generator().manual_seed(self.seed)
        total_steps = protocol.epochs * math.ceil(len(self.train_set) / protocol.batch_size)
        self.trace = Trace(total_steps, bench.num_tasks, every=self.trace_every)
        self.checkpoint = RunCheckpoint(
            self.run_dir,
            self.identity(),
            model=self.model,
            optimizer=self.optimizer,
            scheduler=self.scheduler,
            weighting=self.weighting,
            trace=self.trace,
            main_process=place.rank == 0,
        )
        self.state, step_times = RunState.start(bench.num_tasks, self.data_order), []
        if place.rank == 0:
            remove_stale_temporaries(self.run_dir)  # left by writers killed mid-write
        if self.checkpoint.exists():
            self.state, step_times = self.checkpoint.restore()
        self.step_timer = StepTimer(place.device, self.state.global_step, total_steps, step_times)

    def _epoch_batches(self) -> list[Tensor]:
        """This process's index batches of the current epoch, drawn from the data order at its start."""
        self.data_order.set_state(self.state.data_order_at_epoch_start)
        order = torch.randperm(len(self.train_set), generator=self.data_order)
        return self.placement.shard(order.split(self.protocol.batch_size))

    def train_epoch(self) -> None:
        """The rest of the current epoch, from ``step_in_epoch`` on, in the epoch's data order."""
        state, place = self.state, self.placement
        epoch, batches = state.epoch, self._epoch_batches()
        state.loss_sums = state.loss_sums.to(place.device)
        loader_seed = self.seed * 1_000_003 + epoch
        timer = time.perf_counter()
        self.step_timer.restart(state.global_step)
        remaining = batches[state.step_in_epoch :]
        for batch in iterate_batches(
            self.train_set, remaining, self.benchmark.collate_fn, self.protocol.num_workers, loader_seed
        ):
            try:
                losses, skipped = self.step(place.batch(batch), state.global_step)
            except NonFiniteLossError as error:
                raise self._named(error) from error
            losses = place.mean(losses)
            if not skipped:
                self.trace.record(state.global_step, self.weighting.diagnostics)
            self.step_timer.lap(state.global_step)
            state.count_step(losses, skipped)
            due = self.checkpoint_every is not None and state.global_step % self.checkpoint_every == 0
            if due or self.callbacks:
                # Checkpoints and callbacks are not training time: stop the clock around them.
                state.epoch_time += time.perf_counter() - timer
                if due and state.step_in_epoch < len(batches):  # the epoch end saves anyway
                    self.save_checkpoint()
                diagnostics = {} if skipped else self.weighting.diagnostics
                info = StepInfo(
                    epoch, state.step_in_epoch, state.global_step, losses, self.run_dir, skipped, diagnostics
                )
                for callback in self.callbacks:
                    callback(info)
                timer = time.perf_counter()
                self.step_timer.restart(state.global_step)
        state.epoch_time += time.perf_counter() - timer
        self.step_timer.flush()

    def _named(self, error: NonFiniteLossError) -> NonFiniteLossError:
        """The step's error with the run, the tasks' names and the epoch, and what to do instead."""
        names = [self.benchmark.task_names[m] for m in error.tasks]
        step = self.state.global_step
        return NonFiniteLossError(
            f"{self.benchmark.name} {self.method.label} seed {self.seed}: non-finite loss for task(s) {names} "
            f"at step {step} (epoch {self.state.epoch + 1}): {error}; nonfinite='skip' "
            "(go4align bench --nonfinite skip) skips such steps",
            error.tasks,
            step,
        )

    def end_epoch(self) -> None:
        """Evaluate, step the scheduler, append the epoch to the history, move to the next epoch."""
        state, bench = self.state, self.benchmark
        val = self.evaluate(self.model, "val") if "val" in bench.splits else None
        test = self.evaluate(self.model, "test")
        if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            self.scheduler.step(self._score(val))
        elif self.scheduler is not None:
            self.scheduler.step()
        entry = {
            "epoch": state.epoch + 1,
            "time_s": state.epoch_time,
            "train_losses": dict(zip(bench.task_names, state.train_losses().tolist())),
            "val": val,
            "test": test,
        }
        state.next_epoch(entry, self.data_order)
        if callable(self.progress):
            self.progress(self._progress_line(entry))
        elif self.progress:
            print(self._progress_line(entry), flush=True)

    def evaluate(self, model: nn.Module, split: str) -> dict[str, float]:
        """The benchmark's metrics of ``model`` on ``split`` (:func:`~go4align.train.evaluation.evaluate`)."""
        return evaluate(self.benchmark, model, split, self.placement)

    def _end_epoch_callbacks(self) -> None:
        state = self.state
        info = EpochInfo(state.epoch, self.protocol.epochs, state.global_step, state.history[-1], self.run_dir)
        for callback in self.callbacks:
            end_epoch = getattr(callback, "end_epoch", None)
            if end_epoch is not None:
                end_epoch(info)

    def _score(self, values: dict[str, float]) -> float:
        return validation_score(
            values, self.selection_metrics, self.benchmark.directions, self.protocol, self.benchmark.stl_reference
        )

    def _progress_line(self, entry: dict) -> str:
        losses = " ".join(f"{v:.4g}" for v in list(entry["train_losses"].values())[:4])
        shown = list(entry["test"].items())[:4]
        test = " ".join(f"{k}={v:.4g}" for k, v in shown)
        more = " ..." if len(entry["test"]) > len(shown) else ""
        label = self.method.label + (f"[{self.focus_task}]" if self.focus_task else "")
        return (
            f"[{self.benchmark.name}] {label} seed{self.seed} "
            f"epoch {entry['epoch']}/{self.protocol.epochs} {entry['time_s']:.2f}s "
            f"train losses {losses}{' ...' if self.benchmark.num_tasks > 4 else ''} | test {test}{more}"
        )

    # -- checkpoints and results -------------------------------------------------------------
    def save_checkpoint(self) -> None:
        """Checkpoint the run as it stands (rank 0 writes)."""
        self.checkpoint.save(self.state, step_times=self.step_timer.state_dict(), peak_memory_mb=self.peak_memory_mb())

    def _write_result(self) -> dict:
        result = self.result()
        if self.placement.rank == 0:
            write_result(result, self.run_dir / RESULT_FILE)
        return result

    @functools.cached_property
    def provenance(self) -> dict:
        """The code, libraries and machine of this process's part of the run (collected once)."""
        return provenance.collect(self.placement.device)

    def peak_memory_mb(self) -> float | None:
        """The run's peak over its processes (a resume is a new one); ``None`` where not measured."""
        current, previous = self.memory.megabytes(), self.state.previous_peak_mb
        if current is None or previous is None:
            return current
        return max(previous, current)

    def result(self) -> dict:
        """The ``result.json`` of the run so far (``complete`` once every epoch has run).

        ``metrics`` follow the protocol's reporting rule (``selected_epoch``: the epoch chosen by
        ``best_validation``, else ``None``); each epoch's ``time_s`` is its training wall time
        (data loading included; evaluation, checkpoints and callbacks excluded);
        ``time_per_epoch_s`` is their median; ``step_time_ms`` summarises the sampled step times
        in steady state (median, quartiles, 10th and 90th percentiles; warm-up steps, evaluation
        and checkpoints excluded: see :mod:`~go4align.train.cost`); ``peak_memory_method`` says
        how ``peak_memory_mb`` was measured, ``None`` where it was not (see
        :class:`~go4align.train.placement.PeakMemory`); ``trace`` holds the
        weighting's diagnostics every ``trace_every`` steps (see
        :class:`~go4align.train.results.Trace`; ``groups`` and ``group_weights`` are ``None``
        for methods without groups); ``provenance`` is
        :func:`go4align.train.provenance.collect`'s record of the process writing it (for a
        resumed run, the last one; ``grid.json`` lists every invocation's). STL runs of one task
        add ``focus_task``. Nothing in it is a path of the machine.
        """
        bench, protocol, history = self.benchmark, self.protocol, self.state.history
        metrics, selected = summarise(history, self.selection_metrics, bench.directions, protocol, bench.stl_reference)
        result = {
            "benchmark": bench.name,
            "method": self.method.name,
            "method_label": self.method.label,
            "method_options": self.options,
            "seed": self.seed,
            "tasks": bench.task_names,
            "metrics": metrics,
            "directions": bench.directions,
            "reporting_rule": protocol.reporting_rule,
            "selected_epoch": selected,
            "stl_reference": dict(bench.stl_reference) if bench.stl_reference is not None else None,
            "epochs": history,
            "time_per_epoch_s": statistics.median(e["time_s"] for e in history) if history else None,
            "step_time_ms": self.step_timer.summary(),
            "peak_memory_mb": self.peak_memory_mb(),
            "peak_memory_method": self.memory.method,
            "device": str(self.placement.device),
            "trace": self.trace.to_json(),
            "complete": len(history) == protocol.epochs,
            "nonfinite": self.nonfinite,
            "skipped_steps": self.state.skipped_steps,
            "provenance": self.provenance,
        }
        if self.focus_task is not None:
            result["focus_task"] = self.focus_task
        return result


def train_run(benchmark: Benchmark, method: MethodSpec, seed: int, run_dir: str | Path, **options: Any) -> dict:
    """Train (or resume, or just re-read) one run; see :class:`Trainer` for the options."""
    return Trainer(benchmark, method, seed, run_dir, **options).fit()
