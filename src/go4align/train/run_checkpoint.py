"""Checkpoints of a run: everything its remaining steps depend on, saved and restored exactly.

A checkpoint (``checkpoint.pt``, through :class:`~go4align.train.checkpoint.CheckpointStore`,
which verifies it against the run's identity and checksums before use) holds:

* ``model``, ``optimizer``, ``scheduler`` (``None`` without one), ``weighting``: their state dicts;
* ``rng``: the python, numpy, torch (and CUDA) generators' states;
* ``state``: the :class:`~go4align.train.state.RunState` as a dict, with the step timer's
  samples under ``step_times`` and ``previous_peak_mb`` the run's peak memory so far;
* ``trace``: the trace's state dict.

Restoring loads each back into the objects it came from, sets the global generators, and
returns the run state and the step timer's samples; a run continued from there ends
bit-identical to an uninterrupted one (see :mod:`go4align.train.trainer` for the conditions).
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import torch
from torch import nn

from go4align.weighting import Weighting

from .checkpoint import CheckpointStore, rng_state, set_rng_state
from .results import Trace
from .state import RunState

__all__ = ["CHECKPOINT_KEYS", "RunCheckpoint"]

CHECKPOINT_KEYS = ("model", "optimizer", "scheduler", "weighting", "rng", "state", "trace")


class RunCheckpoint:
    """Save and restore the checkpoints of the run whose objects it is given.

    Args:
        run_dir: the run's directory.
        identity: what makes the run this run (benchmark, protocol, method, seed...): a
            checkpoint written under another identity is refused.
        model, optimizer, scheduler, weighting, trace: the run's objects (``scheduler`` may be
            ``None``).
        main_process: whether this process writes (rank 0) and says why a file was refused.
    """

    def __init__(
        self,
        run_dir: str | Path,
        identity: dict,
        *,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler,
        weighting: Weighting,
        trace: Trace,
        main_process: bool = True,
    ):
        self.store = CheckpointStore(run_dir)
        self.identity = identity
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.weighting, self.trace = weighting, trace
        self.main_process = main_process

    def exists(self) -> bool:
        return self.store.exists()

    def save(self, state: RunState, *, step_times: list, peak_memory_mb: float | None) -> None:
        """Write the checkpoint of ``state`` (on the main process only)."""
        if not self.main_process:
            return
        payload = {  # CHECKPOINT_KEYS
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "weighting": self.weighting.state_dict(),
            "rng": rng_state(),
            "state": {**state.to_dict(), "previous_peak_mb": peak_memory_mb, "step_times": step_times},
            "trace": self.trace.state_dict(),
        }
        self.store.save(payload, self.identity, global_step=state.global_step, threads=torch.get_num_threads())

    def restore(self) -> tuple[RunState, list]:
        """Load the newest verified checkpoint into the run's objects and the global generators;
        returns the run state and the step timer's samples. A ``ValueError`` when the files
        belong to another run, :class:`~go4align.train.checkpoint.CheckpointError` when none is
        usable."""
        loaded = self.store.load(self.identity, keys=CHECKPOINT_KEYS)
        if self.main_process:
            for path, reason in loaded.refused:
                print(f"go4align: refused {path} ({reason}); resuming from {loaded.path} instead", file=sys.stderr)
        threads = torch.get_num_threads()
        if loaded.threads is not None and loaded.threads != threads and self.main_process:
            warnings.warn(
                f"{self.store.directory}: resuming with {threads} torch thread(s), but the run was written with "
                f"{loaded.threads}; the result may differ in the last bits from an uninterrupted run "
                f"(use --threads {loaded.threads} for a bit-identical resume)",
                RuntimeWarning,
                stacklevel=4,
            )
        checkpoint = loaded.payload
        self.model.load_state_dict(checkpoint["model"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(checkpoint["scheduler"])
        self.weighting.load_state_dict(checkpoint["weighting"])
        self.trace.load_state_dict(checkpoint["trace"])
        saved = dict(checkpoint["state"])
        step_times = saved.pop("step_times")
        set_rng_state(checkpoint["rng"])
        return RunState.from_dict(saved), step_times
