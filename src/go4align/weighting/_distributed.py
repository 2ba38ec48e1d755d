"""The few collectives the methods need under ``torch.distributed`` (no-ops on one process).

Every helper is called by every rank at the same point of a step, so that ranks never wait on
one another in a different order. gloo (the CPU backend) has no ``ReduceOp.AVG``: means are a
``SUM`` divided by the world size.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = ["world_size", "rank", "average", "gather_batches"]


_AVAILABLE = dist.is_available()


def world_size() -> int:
    """The number of processes of the default group, 1 when torch.distributed is not in use."""
    if _AVAILABLE and dist.is_initialized():
        return dist.get_world_size()
    return 1


def rank() -> int:
    return dist.get_rank() if world_size() > 1 else 0


def average(tensors: Sequence[Tensor]) -> list[Tensor]:
    """The mean over ranks of each tensor (new tensors), with one all-reduce of one flat buffer."""
    tensors = list(tensors)
    if world_size() == 1 or not tensors:
        return tensors
    flat = torch.cat([t.detach().reshape(-1) for t in tensors])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= world_size()
    return [piece.view_as(t) for piece, t in zip(flat.split([t.numel() for t in tensors]), tensors)]


def gather_batches(tensor: Tensor, dim: int) -> tuple[Tensor, int, int]:
    """Every rank's ``tensor`` concatenated along ``dim`` in rank order (the global batch), with
    this rank's offset and length along ``dim``. Ranks may hold different lengths (the last batch
    of an epoch): each is padded to the longest for the all-gather, then trimmed."""
    lengths = torch.tensor([tensor.shape[dim]], device=tensor.device)
    everyone = [torch.empty_like(lengths) for _ in range(world_size())]
    dist.all_gather(everyone, lengths)
    lengths = [int(n) for n in everyone]
    longest, mine = max(lengths), tensor.shape[dim]
    padding = list(tensor.shape)
    padding[dim] = longest - mine
    padded = torch.cat([tensor.detach(), tensor.new_zeros(padding)], dim).contiguous()
    parts = [torch.empty_like(padded) for _ in lengths]
    dist.all_gather(parts, padded)
    whole = torch.cat([part.narrow(dim, 0, n) for part, n in zip(parts, lengths)], dim)
    return whole, sum(lengths[: rank()]), mine
