"""The batches of a split, in a given order of index batches."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, default_collate

__all__ = ["iterate_batches"]


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
