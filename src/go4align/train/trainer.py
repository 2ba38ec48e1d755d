"""One training run, (benchmark, method, seed), driven only through the weighting protocol.

Every step: ``zero_grad``; predictions and shared representation; the task losses;
``weighting.backward(losses, shared_parameters=..., shared_representation=...)``;
``optimizer.step()``; ``weighting.after_step(closure)`` where ``closure`` recomputes the losses of
the same batch without gradients. Every epoch: ``weighting.end_epoch()``, evaluation on val (if
the benchmark has it) and test, the scheduler step, a checkpoint and ``result.json``.

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

import contextlib
import functools
import math
import random
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, default_collate

from go4align.benchmarks.api import Benchmark
from go4align.weighting import NonFiniteLossError, Weighting

from . import provenance
from .checkpoint import CheckpointStore, remove_stale_temporaries, rng_state, set_rng_state, write_json_atomic
from .cost import StepTimer
from .placement import PeakMemory, Placement
from .results import Trace, summarise, validation_score
from .spec import MethodSpec

__all__ = ["StepInfo", "EpochInfo", "Trainer", "train_run", "param_groups", "NONFINITE"]

NONFINITE = ("raise", "skip")
RESULT = "result.json"
CHECKPOINT_KEYS = ("model", "optimizer", "scheduler", "weighting", "rng", "state", "trace")


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


def iterate_batches(dataset: Any, index_batches: Sequence[Tensor], collate_fn, num_workers: int, seed: int) -> Iterator:
    """Batches in the given order: ``dataset.get_batch`` when offered, else a DataLoader.

    The loader gets its own generator (seeded with ``seed``) because starting a loader draws
    its workers' base seed from it, which would otherwise come from torch's global generator and
    make a run resumed mid-epoch (one more loader start) diverge.
    """
    if callable(getattr(dataset, "get_batch", None)):
        return (dataset.get_batch(indices) for indices in index_batches)
    loader = DataLoader(
        dataset,
        batch_sampler=[indices.tolist() for indices in index_batches],
        collate_fn=collate_fn or default_collate,
        num_workers=num_workers,
        generator=torch.Generator().manual_seed(seed),
    )
    return iter(loader)


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

    After :meth:`fit`, ``model`` (never the DDP wrapper) and ``weighting`` are the trained objects.
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
    ):
        if nonfinite not in NONFINITE:
            raise ValueError(f"nonfinite must be one of {NONFINITE}, got {nonfinite!r}")
        self.nonfinite = nonfinite
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be an int >= 0, got {seed!r}")
        if checkpoint_every is not None and (
            isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, int) or checkpoint_every < 1
        ):
            raise ValueError(f"checkpoint_every must be a positive int or None, got {checkpoint_every!r}")
        if focus_task is not None and focus_task not in benchmark.task_names:
            raise ValueError(f"focus_task must be one of {benchmark.task_names}, got {focus_task!r}")
        self.benchmark, self.method, self.seed = benchmark, method, seed
        self.protocol = benchmark.protocol
        self.run_dir = Path(run_dir)
        self.placement = Placement(device)
        self.checkpoint_every = checkpoint_every
        self.callbacks = list(callbacks)
        self.progress = progress if self.placement.rank == 0 else False
        self.focus_task = focus_task
        self.options = method.effective_options(self.protocol.method_options) if weighting is None else {}
        self.weighting = (
            weighting if weighting is not None else method.build(benchmark.num_tasks, self.protocol.method_options)
        )
        tasks = [t for t in benchmark.tasks if focus_task in (None, t.name)]
        self.selection_metrics = [m.name for t in tasks for m in t.metrics]
        self.checkpoints = CheckpointStore(self.run_dir)

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
            while self.state["epoch"] < self.protocol.epochs:
                self._train_epoch()
                self.weighting.end_epoch()
                self._end_epoch()
                self._save()
                self._write_result()
                self._end_epoch_callbacks()
            result = self._write_result()
            # every rank leaves with the files written, so all skip the same completed runs later
            self.placement.barrier()
        finally:
            self.net = None  # drop the DDP wrapper: it must not outlive the process group
        return result

    def _write_result(self) -> dict:
        result = self.result()
        if self.placement.rank == 0:
            write_json_atomic(result, self.run_dir / RESULT)
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
        self.shared = self.model.shared_parameters()
        self.weighting = place.module(self.weighting)
        self.optimizer = protocol.build_optimizer(
            param_groups(self.model, self.weighting, train_weighting=protocol.train_weighting_parameters)
        )
        self.scheduler = protocol.build_scheduler(self.optimizer)
        self.train_set = bench.dataset("train")
        self.data_order = torch.Generator().manual_seed(self.seed)
        steps_per_epoch = math.ceil(len(self.train_set) / protocol.batch_size)
        self.trace = Trace(protocol.epochs * steps_per_epoch, bench.num_tasks)
        self.state = {
            "epoch": 0,  # epochs completed
            "step_in_epoch": 0,
            "global_step": 0,
            "loss_sums": torch.zeros(bench.num_tasks, dtype=torch.float64),
            "epoch_time": 0.0,
            "history": [],
            "data_order_at_epoch_start": self.data_order.get_state(),
            "previous_peak_mb": None,
            "skipped_steps": 0,
            "skipped_in_epoch": 0,
            "step_times": [],
        }
        if self.placement.rank == 0:
            remove_stale_temporaries(self.run_dir)  # left by writers killed mid-write
        if self.checkpoints.exists():
            self._restore()
        self.step_timer = StepTimer(
            place.device, self.state["global_step"], protocol.epochs * steps_per_epoch, self.state.pop("step_times")
        )

    def _train_epoch(self) -> None:
        """The rest of the current epoch, from ``step_in_epoch`` on, in the epoch's data order."""
        state, protocol = self.state, self.protocol
        epoch = state["epoch"]
        self.data_order.set_state(state["data_order_at_epoch_start"])
        order = torch.randperm(len(self.train_set), generator=self.data_order)
        batches = self.placement.shard(order.split(protocol.batch_size))
        start = state["step_in_epoch"]
        loss_sums = state["loss_sums"].to(self.placement.device)
        loader_seed = self.seed * 1_000_003 + epoch
        timer = time.perf_counter()
        self.step_timer.restart(state["global_step"])
        for batch in iterate_batches(
            self.train_set, batches[start:], self.benchmark.collate_fn, protocol.num_workers, loader_seed
        ):
            losses, skipped = self._step(self.placement.batch(batch))
            losses = self.placement.mean(losses)
            if skipped:
                state["skipped_steps"] += 1
                state["skipped_in_epoch"] += 1
            else:
                loss_sums += losses.double()
                self.trace.record(state["global_step"], self.weighting.diagnostics)
            self.step_timer.lap(state["global_step"])
            state["step_in_epoch"] += 1
            state["global_step"] += 1
            due = self.checkpoint_every is not None and state["global_step"] % self.checkpoint_every == 0
            if due or self.callbacks:
                # Checkpoints and callbacks are not training time: stop the clock around them.
                state["epoch_time"] += time.perf_counter() - timer
                state["loss_sums"] = loss_sums.cpu()
                if due and state["step_in_epoch"] < len(batches):  # the epoch end saves anyway
                    self._save()
                diagnostics = {} if skipped else self.weighting.diagnostics
                info = StepInfo(
                    epoch, state["step_in_epoch"], state["global_step"], losses, self.run_dir, skipped, diagnostics
                )
                for callback in self.callbacks:
                    callback(info)
                timer = time.perf_counter()
                self.step_timer.restart(state["global_step"])
        state["epoch_time"] += time.perf_counter() - timer
        state["loss_sums"] = loss_sums.cpu()
        self.step_timer.flush()

    def _step(self, batch) -> tuple[Tensor, bool]:
        """One training step; returns the detached local losses and whether it was skipped."""
        inputs, targets = batch
        model, weighting = self.model, self.weighting
        model.train()
        self.optimizer.zero_grad(set_to_none=True)
        # Gradient-oriented methods average the gradients over ranks themselves: DDP must not.
        own_reduction = weighting.reduces_gradients and self.net is not model
        with self.net.no_sync() if own_reduction else contextlib.nullcontext():
            predictions, representation = self.net(inputs, return_representation=True)
            losses = self.benchmark.losses(predictions, targets)
            try:
                if not weighting.validate:
                    self._check_finite(losses)
                weighting.backward(losses, shared_parameters=self.shared, shared_representation=representation)
            except NonFiniteLossError as error:
                self._nonfinite(error)
                self.optimizer.zero_grad(set_to_none=True)
                return losses.detach(), True
        self.optimizer.step()

        def closure() -> Tensor:
            # the unwrapped model: no gradients, so nothing for DDP to synchronise
            with torch.no_grad():
                return self.benchmark.losses(model(inputs), targets)

        weighting.after_step(closure)
        return losses.detach(), False

    def _check_finite(self, losses: Tensor) -> None:
        """The weighting's own check, for one built with ``validate=False`` (on the rank-averaged
        losses, so that every rank agrees)."""
        averaged = self.placement.mean(losses.detach())
        bad = [m for m, finite in enumerate(torch.isfinite(averaged).tolist()) if not finite]
        if bad:
            raise NonFiniteLossError(f"non-finite loss for task(s) {bad}", bad, self.state["global_step"])

    def _nonfinite(self, error: NonFiniteLossError) -> None:
        """Raise with the tasks' names and the run's step, unless the policy skips the step."""
        if self.nonfinite == "skip":
            return
        names = [self.benchmark.task_names[m] for m in error.tasks]
        step = self.state["global_step"]
        raise NonFiniteLossError(
            f"{self.benchmark.name} {self.method.label} seed {self.seed}: non-finite loss for task(s) {names} "
            f"at step {step} (epoch {self.state['epoch'] + 1}): {error}; nonfinite='skip' "
            "(go4align bench --nonfinite skip) skips such steps",
            error.tasks,
            step,
        ) from error

    def _end_epoch(self) -> None:
        """Evaluate, step the scheduler, append the epoch to the history, move to the next epoch."""
        state, bench = self.state, self.benchmark
        val = self.evaluate(self.model, "val") if "val" in bench.splits else None
        test = self.evaluate(self.model, "test")
        if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            self.scheduler.step(self._score(val))
        elif self.scheduler is not None:
            self.scheduler.step()
        train_losses = state["loss_sums"] / max(1, state["step_in_epoch"] - state["skipped_in_epoch"])
        entry = {
            "epoch": state["epoch"] + 1,
            "time_s": state["epoch_time"],
            "train_losses": dict(zip(bench.task_names, train_losses.tolist())),
            "val": val,
            "test": test,
        }
        state["history"].append(entry)
        state.update(epoch=state["epoch"] + 1, step_in_epoch=0, epoch_time=0.0, skipped_in_epoch=0)
        state["loss_sums"] = torch.zeros(bench.num_tasks, dtype=torch.float64)
        state["data_order_at_epoch_start"] = self.data_order.get_state()
        if callable(self.progress):
            self.progress(self._progress_line(entry))
        elif self.progress:
            print(self._progress_line(entry), flush=True)

    def _end_epoch_callbacks(self) -> None:
        state = self.state
        info = EpochInfo(state["epoch"], self.protocol.epochs, state["global_step"], state["history"][-1], self.run_dir)
        for callback in self.callbacks:
            end_epoch = getattr(callback, "end_epoch", None)
            if end_epoch is not None:
                end_epoch(info)

    def _score(self, values: dict[str, float]) -> float:
        return validation_score(
            values, self.selection_metrics, self.benchmark.directions, self.protocol, self.benchmark.stl_reference
        )

    @torch.no_grad()
    def evaluate(self, model: nn.Module, split: str) -> dict[str, float]:
        """The benchmark's metrics of ``model`` on ``split``, in eval mode."""
        bench = self.benchmark
        dataset = bench.dataset(split)
        size = self.protocol.eval_batch_size or self.protocol.batch_size
        accumulator = bench.metrics()
        model.eval()
        batches = torch.arange(len(dataset)).split(size)
        for batch in iterate_batches(dataset, batches, bench.collate_fn, self.protocol.num_workers, 0):
            inputs, targets = self.placement.batch(batch)
            accumulator.update(model(inputs), targets)
        model.train()
        values = {name: float(value) for name, value in accumulator.compute().items()}
        expected = set(bench.directions)
        if set(values) != expected:
            raise ValueError(
                f"benchmark {bench.name!r}: the metric accumulator returned {sorted(values)}, "
                f"but the tasks declare {sorted(expected)}"
            )
        return values

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
    def _save(self) -> None:
        if self.placement.rank != 0:
            return
        payload = {  # CHECKPOINT_KEYS
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "weighting": self.weighting.state_dict(),
            "rng": rng_state(),
            "state": {
                **self.state,
                "previous_peak_mb": self.peak_memory_mb(),
                "step_times": self.step_timer.state_dict(),
            },
            "trace": self.trace.state_dict(),
        }
        self.checkpoints.save(
            payload, self.identity(), global_step=self.state["global_step"], threads=torch.get_num_threads()
        )

    def _restore(self) -> None:
        """Resume from the newest verified checkpoint (the run's identity is checked first)."""
        loaded = self.checkpoints.load(self.identity(), keys=CHECKPOINT_KEYS)
        if self.placement.rank == 0:
            for path, reason in loaded.refused:
                print(f"go4align: refused {path} ({reason}); resuming from {loaded.path} instead", file=sys.stderr)
        threads = torch.get_num_threads()
        if loaded.threads is not None and loaded.threads != threads and self.placement.rank == 0:
            warnings.warn(
                f"{self.run_dir}: resuming with {threads} torch thread(s), but the run was written with "
                f"{loaded.threads}; the result may differ in the last bits from an uninterrupted run "
                f"(use --threads {loaded.threads} for a bit-identical resume)",
                RuntimeWarning,
                stacklevel=3,
            )
        checkpoint = loaded.payload
        self.model.load_state_dict(checkpoint["model"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(checkpoint["scheduler"])
        self.weighting.load_state_dict(checkpoint["weighting"])
        self.trace.load_state_dict(checkpoint["trace"])
        self.state = checkpoint["state"]
        set_rng_state(checkpoint["rng"])

    @functools.cached_property
    def provenance(self) -> dict:
        """The code, libraries and machine of this process's part of the run (collected once)."""
        return provenance.collect(self.placement.device)

    def peak_memory_mb(self) -> float | None:
        """The run's peak over its processes (a resume is a new one); ``None`` where not measured
        (an older checkpoint's CPU figure, taken process-wide, is not carried over either)."""
        current, previous = self.memory.megabytes(), self.state["previous_peak_mb"]
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
        weighting's diagnostics at most every ``stride`` steps (``groups`` and
        ``group_weights`` are ``None`` for methods without groups); ``provenance`` is
        :func:`go4align.train.provenance.collect`'s record of the process writing it (for a
        resumed run, the last one; ``grid.json`` lists every invocation's). STL runs of one task
        add ``focus_task``. Nothing in it is a path of the machine.
        """
        bench, protocol, history = self.benchmark, self.protocol, self.state["history"]
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
            "skipped_steps": self.state["skipped_steps"],
            "provenance": self.provenance,
        }
        if self.focus_task is not None:
            result["focus_task"] = self.focus_task
        return result


def train_run(benchmark: Benchmark, method: MethodSpec, seed: int, run_dir: str | Path, **options: Any) -> dict:
    """Train (or resume, or just re-read) one run; see :class:`Trainer` for the options."""
    return Trainer(benchmark, method, seed, run_dir, **options).fit()
