"""Where a run's tensors live: the device, the distributed wrap and the data sharding.

Everything device- or process-specific of the trainer goes through :class:`Placement`. Under
``torchrun`` (``WORLD_SIZE > 1``), :func:`distributed` initialises the default process group
from the launcher's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``,
``MASTER_PORT``; gloo on the CPU, nccl on CUDA) and tears it down at the end; a placement then
wraps the model in ``DistributedDataParallel`` and gives each rank its shard of every global
batch, so that the ranks together take the step one process would take on the whole batch.
Evaluation is not sharded: every rank evaluates the (identical) unwrapped model on the whole
split, and only rank 0 writes files. See ``docs/distributed.md``.
"""

from __future__ import annotations

import contextlib
import datetime
import gc
import os
from collections.abc import Iterator, Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

__all__ = ["Placement", "PeakMemory", "distributed", "is_main_process", "DDP_TIMEOUT_S"]

DDP_TIMEOUT_S = 600.0  # how long a collective waits for a silent rank before the job ends


def check_seconds(name: str, value: Any) -> None:
    """Raise a ``ValueError`` naming ``name`` and ``value`` unless ``value`` is a finite number of
    seconds > 0 (an int or a float, not a bool)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
        raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")


def is_main_process() -> bool:
    """Whether this process writes the files of a run: rank 0, or the only process."""
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def _launched_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


@contextlib.contextmanager
def distributed(device: str | torch.device = "cpu", timeout: float = DDP_TIMEOUT_S) -> Iterator[None]:
    """Run the body in the default process group when launched by ``torchrun`` with
    ``WORLD_SIZE > 1`` (a no-op otherwise, or when a group already exists).

    ``timeout`` (seconds, default :data:`DDP_TIMEOUT_S`, 10 minutes) bounds every collective:
    when a rank stalls (stopped, hung, or its machine gone silent), the others raise
    :class:`TimeoutError` within it and the job ends instead of waiting forever. It must exceed
    the longest time one rank may legitimately spend between two collectives (an evaluation,
    a checkpoint); ``go4align bench --ddp-timeout SECONDS`` sets it.

    On a normal exit every rank waits for the others, then the group is destroyed; the caller
    must have dropped its ``DistributedDataParallel`` objects by then (the trainer drops its own
    at the end of ``fit``): destroying a group under a live DDP object, or leaving the group to
    the interpreter's exit, can abort the process with gloo. After an exception the group is
    destroyed without the barrier, which the other ranks might never reach.
    """
    check_seconds("timeout", timeout)
    if _launched_world_size() <= 1 or dist.is_initialized():
        yield
        return
    cuda = torch.device(device).type == "cuda"
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if cuda else "gloo", timeout=datetime.timedelta(seconds=timeout))
    try:
        yield
        gc.collect()  # DDP objects held only by reference cycles go before the group
        dist.barrier()
    except RuntimeError as error:  # gloo raises a plain RuntimeError, "Timed out waiting 5000ms for recv ..."
        if "timed out" not in str(error).lower():
            raise
        raise TimeoutError(
            f"rank {dist.get_rank()} of {dist.get_world_size()}: another rank did not answer within the "
            f"process-group timeout of {timeout:g} s (stopped, hung or unreachable), so the job ends; "
            "if a step legitimately takes longer, raise it (go4align bench --ddp-timeout SECONDS)"
        ) from error
    finally:
        dist.destroy_process_group()


class Placement:
    """The device (``cuda`` becomes ``cuda:LOCAL_RANK`` under torchrun), the rank and the world
    size of the default process group (1 without one)."""

    def __init__(self, device: str | torch.device = "cpu"):
        try:
            self.device = torch.device(device)
        except (RuntimeError, TypeError) as error:
            raise ValueError(f"device must name a torch device such as 'cpu' or 'cuda:0', got {device!r}") from error
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {device!r} requested, but torch.cuda.is_available() is False")
        initialised = dist.is_available() and dist.is_initialized()
        self.world_size = dist.get_world_size() if initialised else 1
        self.rank = dist.get_rank() if initialised else 0
        if _launched_world_size() > 1 and not initialised:
            raise ValueError(
                f"launched with WORLD_SIZE={_launched_world_size()} but torch.distributed is not initialised: "
                "run the trainer inside go4align.train.distributed() (the go4align command does)"
            )
        if self.world_size > 1 and self.device.type == "cuda" and self.device.index is None:
            self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))

    def model(self, model: nn.Module) -> nn.Module:
        return model.to(self.device)

    def wrap(self, model: nn.Module) -> nn.Module:
        """The module to run the training forward through: ``DistributedDataParallel`` over
        ``model`` on more than one process, ``model`` itself otherwise."""
        if self.world_size == 1:
            return model
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=device_ids)

    def module(self, module: nn.Module) -> nn.Module:
        """A module that is not the model (the weighting): placed, never wrapped."""
        return module.to(self.device)

    def shard(self, batches: Sequence[Tensor]) -> Sequence[Tensor]:
        """This process's share of an epoch's index batches: all of them on one process; on
        ``R`` processes, its ``1/R`` of every global batch (sizes differ by at most one when ``R``
        does not divide the batch). A global batch with fewer than ``R`` samples (an epoch's
        last) is dropped on every rank, as a rank without samples has no loss to average."""
        if self.world_size == 1:
            return batches
        return [b.tensor_split(self.world_size)[self.rank] for b in batches if len(b) >= self.world_size]

    def mean(self, tensor: Tensor) -> Tensor:
        """The mean of ``tensor`` over ranks (``tensor`` itself on one process)."""
        if self.world_size == 1:
            return tensor
        total = tensor.detach().clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM)  # gloo has no AVG
        return total / self.world_size

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()

    def batch(self, batch: Any) -> Any:
        """Move tensors in nested tuples, lists and dicts, and objects with a ``to(device)`` method,
        to the device."""
        if isinstance(batch, Tensor):
            return batch.to(self.device, non_blocking=True)
        if isinstance(batch, dict):
            return {k: self.batch(v) for k, v in batch.items()}
        if isinstance(batch, (list, tuple)):
            return type(batch)(self.batch(v) for v in batch)
        if callable(getattr(batch, "to", None)):
            # A batch type of a benchmark's own (QM9's padded blocks of graphs) moves itself.
            return batch.to(self.device)
        return batch


class PeakMemory:
    """Peak memory of one run, right whatever ran before it in the process.

    CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats`` at the start of
    the run, minus what was allocated then (so tensors left by earlier runs do not count, and the
    run's model, optimiser state and activations do). CPU: not measured. PyTorch keeps no peak
    statistics for CPU tensors, and the process-wide measures are wrong for every run but the
    first: ``ru_maxrss`` only grows, and the resident set size stays high after a run because
    the allocator keeps freed memory, so a later run that reuses it reads as 0 MB.
    :attr:`method` names the measure; :meth:`megabytes` is ``None`` when nothing was measured.
    """

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.device = device
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(device)
            self.method = "cuda_max_memory_allocated"
            self.start = torch.cuda.memory_allocated(device)
        else:
            self.method = "not_measured_on_cpu"

    def megabytes(self) -> float | None:
        if not self.cuda:
            return None
        return (torch.cuda.max_memory_allocated(self.device) - self.start) / 2**20
