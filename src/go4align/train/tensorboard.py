"""TensorBoard logging of training runs: :class:`TensorBoardCallback` (``go4align bench --tensorboard``).

A trainer callback (``Trainer(..., callbacks=[cb])`` or ``run_grid(..., callbacks=[cb])``) that
writes, through ``torch.utils.tensorboard``, one event directory per run,
``<run_dir>/tensorboard`` (``runs/<method>/seed<k>/tensorboard`` in a grid; point
``tensorboard --logdir`` at the grid's ``runs``). Scalars, at the step numbers of
``result.json``'s ``trace`` (0-based, the step's index in the run):

* every step: ``loss/<task>`` and ``weight/<task>`` (the weighting's ``diagnostics``, the
  losses it computed the weights from); for methods that group tasks (GO4Align),
  ``group/<task>`` (the task's group id) and ``group_weight/<k>`` (group ``k``'s weight);
* every epoch, at its last step: ``train_loss/<task>`` (the epoch's mean), ``val/<metric>``
  (benchmarks with a validation split) and ``test/<metric>``, the values of ``result.json``'s
  ``epochs``.

Host synchronisation: none per step. A step's values stay on the device (one ``torch.cat``
into a float64 row, which runs asynchronously); the rows are copied to the host in one transfer
at each epoch end, where the trainer synchronises anyway (it evaluates the model and reads the
metrics), and every ``flush_every`` steps if given (the CLI passes ``--checkpoint-every``, so
that they go with the checkpoint writes, which synchronise too). Skipped steps
(``nonfinite="skip"``) log nothing, as in the trace.

A resumed run logs again from the step its checkpoint holds; the writer is opened with
``purge_step`` there, so that TensorBoard drops what an interrupted process wrote beyond it. Under
``torchrun`` only rank 0 writes. Steps a killed process logged after its last flush are lost
(between its last flush and its checkpoint, a gap in the curves; none when ``flush_every``
equals ``checkpoint_every``).

``tensorboard`` is an optional extra: ``pip install 'go4align[tensorboard]'``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .placement import is_main_process
from .trainer import EpochInfo, StepInfo

__all__ = ["TensorBoardCallback", "EVENTS_DIR"]

#: The event directory's name inside a run's directory.
EVENTS_DIR = "tensorboard"
#: The diagnostics logged per step, by tag prefix: per task (``M`` values) or per group.
STEP_KEYS = {"losses": "loss", "weights": "weight", "groups": "group", "group_weights": "group_weight"}


def summary_writer_class() -> type:
    """``torch.utils.tensorboard.SummaryWriter``, or an ImportError naming the extra."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as error:
        raise ImportError(
            "TensorBoard logging needs the tensorboard package: pip install 'go4align[tensorboard]'"
        ) from error
    return SummaryWriter


@dataclass
class _Run:
    """What is logged of one run directory: its writer (opened at the first flush) and the rows
    of the steps not yet written."""

    directory: Path
    names: list[str]  # the task names, or ``task<m>`` where the trainer does not say them
    first_step: int  # the first step this process logs: the writer purges from there
    rows: list[tuple[int, tuple[tuple[str, int], ...], Tensor]] = field(default_factory=list)
    writer: Any = None


class TensorBoardCallback:
    """Log every run's per-step losses, weights, groups and per-epoch metrics to TensorBoard.

    Args:
        task_names: names for the ``<task>`` of the tags, in the order of the losses (the
            benchmark's ``task_names``); ``None``: ``task0``, ``task1``, ...
        flush_every: also copy the buffered steps to the host and write them every this many
            steps (``None``: at epoch ends only; see the module docstring).

    One callback serves every run of a grid (each has its own directory). Call :meth:`close`
    (or use it as a context manager) when training ends or is interrupted, to write what is
    buffered; a run's writer closes by itself after its last epoch.
    """

    def __init__(self, task_names: list[str] | None = None, *, flush_every: int | None = None):
        if flush_every is not None and (
            isinstance(flush_every, bool) or not isinstance(flush_every, int) or flush_every < 1
        ):
            raise ValueError(f"flush_every must be a positive int or None, got {flush_every!r}")
        if task_names is not None and not (
            isinstance(task_names, (list, tuple)) and all(isinstance(n, str) for n in task_names)
        ):
            raise TypeError(f"task_names must be a list of str or None, got {task_names!r}")
        self.writer_class = summary_writer_class()  # fails here, before any training, without the extra
        self.task_names = list(task_names) if task_names is not None else None
        self.flush_every = flush_every
        self.runs: dict[Path, _Run] = {}

    # -- the trainer's hooks ---------------------------------------------------------------------
    def __call__(self, info: StepInfo) -> None:
        if info.skipped or not is_main_process():
            return
        run = self._run(info.run_dir, info.losses.shape[0], info.global_step - 1)
        step = info.global_step - 1
        layout, values = self._row(info.diagnostics, info.losses)
        run.rows.append((step, layout, values))
        if self.flush_every is not None and info.global_step % self.flush_every == 0:
            self._write_rows(run)

    def end_epoch(self, info: EpochInfo) -> None:
        if not is_main_process():
            return
        # a run seen first here had every step of the epoch skipped
        run = self._run(info.run_dir, len(info.entry["train_losses"]), info.global_step - 1)
        self._write_rows(run)
        step, entry = info.global_step - 1, info.entry
        writer = self._writer(run)
        for task, value in entry["train_losses"].items():
            writer.add_scalar(f"train_loss/{task}", value, step)
        for split in ("val", "test"):
            for metric, value in (entry.get(split) or {}).items():
                writer.add_scalar(f"{split}/{metric}", value, step)
        writer.flush()
        if info.epoch == info.epochs:  # the run is done: release its file
            writer.close()
            del self.runs[info.run_dir]

    def close(self) -> None:
        """Write what is buffered and close every writer."""
        for run in self.runs.values():
            self._write_rows(run)
            if run.writer is not None:
                run.writer.close()
        self.runs.clear()

    def __enter__(self) -> TensorBoardCallback:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __getstate__(self) -> dict:  # a copy for another process: the settings, no open files
        return {**self.__dict__, "runs": {}}

    # -- helpers --------------------------------------------------------------------------------
    def _run(self, run_dir: Path, num_tasks: int, step: int) -> _Run:
        """The run of ``run_dir``, begun at ``step`` if this process has not logged it yet."""
        run = self.runs.get(run_dir)
        if run is None:
            names = self.task_names if self.task_names is not None else [f"task{m}" for m in range(num_tasks)]
            if len(names) != num_tasks:
                raise ValueError(f"task_names has {len(names)} names, but the losses have {num_tasks} tasks: {names}")
            run = self.runs[run_dir] = _Run(run_dir / EVENTS_DIR, names, step)
        return run

    @staticmethod
    def _row(diagnostics: Mapping[str, Tensor], losses: Tensor) -> tuple[tuple[tuple[str, int], ...], Tensor]:
        """One step's values as one new float64 tensor on their device (no host copy), and its
        layout: (tag prefix, number of values) per part."""
        parts = {"losses": diagnostics["losses"] if "losses" in diagnostics else losses}
        parts.update({key: diagnostics[key] for key in ("weights", "groups", "group_weights") if key in diagnostics})
        flat = [value.detach().reshape(-1) for value in parts.values()]
        device = flat[0].device
        values = torch.cat([value.to(device, torch.float64) for value in flat])
        return tuple((STEP_KEYS[key], value.numel()) for key, value in zip(parts, flat)), values

    def _writer(self, run: _Run):
        if run.writer is None:
            run.writer = self.writer_class(log_dir=str(run.directory), purge_step=run.first_step)
        return run.writer

    def _write_rows(self, run: _Run) -> None:
        """The buffered steps to the event file: one device-to-host copy for all of them."""
        if not run.rows:
            return
        values = torch.cat([row for _, _, row in run.rows]).cpu().tolist()
        writer, position = self._writer(run), 0
        for step, layout, _ in run.rows:
            for prefix, size in layout:
                names = run.names if prefix in ("loss", "weight", "group") else [str(k) for k in range(size)]
                for name, value in zip(names, values[position : position + size]):
                    writer.add_scalar(f"{prefix}/{name}", value, step)
                position += size
        run.rows.clear()
