"""Where a run's tensors live: the device, and (later) the distributed wrap and data sharding.

Everything device- or process-specific of the trainer goes through :class:`Placement`, so that
distributed data parallel training is added here alone: wrap the model in
``DistributedDataParallel`` in :meth:`Placement.model` (keeping the unwrapped model for
``shared_parameters``), give each rank its slice of the epoch's batches in :meth:`shard`, and
reduce the metric accumulators across ranks.
"""

from __future__ import annotations

import os
import resource
import sys
from typing import Any, Sequence

import torch
from torch import Tensor, nn

__all__ = ["Placement", "PeakMemory"]


class Placement:
    def __init__(self, device: str | torch.device = "cpu", world_size: int = 1):
        try:
            self.device = torch.device(device)
        except (RuntimeError, TypeError) as error:
            raise ValueError(f"device must name a torch device such as 'cpu' or 'cuda:0', got {device!r}") from error
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {device!r} requested, but torch.cuda.is_available() is False")
        if world_size != 1:
            raise NotImplementedError(f"world_size={world_size}: distributed training is not implemented yet")
        self.world_size = world_size

    def model(self, model: nn.Module) -> nn.Module:
        return model.to(self.device)

    def module(self, module: nn.Module) -> nn.Module:
        """A module that is not the model (the weighting): placed, never wrapped."""
        return module.to(self.device)

    def shard(self, batches: Sequence[Tensor]) -> Sequence[Tensor]:
        """This process's share of an epoch's index batches (all of them on one process)."""
        return batches

    def batch(self, batch: Any) -> Any:
        """Move tensors in nested tuples, lists and dicts to the device."""
        if isinstance(batch, Tensor):
            return batch.to(self.device, non_blocking=True)
        if isinstance(batch, dict):
            return {k: self.batch(v) for k, v in batch.items()}
        if isinstance(batch, (list, tuple)):
            return type(batch)(self.batch(v) for v in batch)
        return batch


def _rss_bytes() -> int | None:
    """Current resident set size, from /proc (Linux); ``None`` elsewhere."""
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


class PeakMemory:
    """Peak memory of a run above its start.

    CUDA: ``torch.cuda.max_memory_allocated`` (reset at the start). CPU on Linux: the resident
    set size sampled at every step and evaluation batch, minus the RSS at the start. Elsewhere:
    the increase of ``getrusage().ru_maxrss``, which misses peaks below an earlier one in the
    same process. :attr:`method` says which was used.
    """

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.device = device
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(device)
            self.method = "cuda_max_memory_allocated"
            self.start = torch.cuda.memory_allocated(device)
        elif _rss_bytes() is not None:
            self.method = "cpu_rss_sampled_per_step"
            self.start = _rss_bytes()
        else:
            self.method = "cpu_ru_maxrss_increase"
            self.start = self._maxrss()
        self.peak = self.start

    @staticmethod
    def _maxrss() -> int:
        # ru_maxrss is in kilobytes on Linux, bytes on macOS.
        scale = 1 if sys.platform == "darwin" else 1024
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale

    def sample(self) -> None:
        if self.method == "cpu_rss_sampled_per_step":
            self.peak = max(self.peak, _rss_bytes())

    def megabytes(self) -> float:
        if self.cuda:
            self.peak = torch.cuda.max_memory_allocated(self.device)
        elif self.method == "cpu_ru_maxrss_increase":
            self.peak = self._maxrss()
        return max(0.0, (self.peak - self.start) / 2**20)
