"""A benchmark's metrics of a model on one split."""

from __future__ import annotations

import torch
from torch import nn

from go4align.benchmarks.api import Benchmark

from .data import iterate_batches
from .placement import Placement

__all__ = ["evaluate"]


@torch.no_grad()
def evaluate(
    benchmark: Benchmark, model: nn.Module, split: str, placement: Placement | None = None
) -> dict[str, float]:
    """The benchmark's metrics of ``model`` on ``split``, in eval mode (train mode again after).

    Batches of the protocol's ``eval_batch_size`` (else its ``batch_size``) in index order, moved
    by ``placement`` (the CPU when ``None``). A ``ValueError`` names the metrics when the
    benchmark's accumulator returns others than its tasks declare.
    """
    placement = placement or Placement("cpu")
    protocol = benchmark.protocol
    dataset = benchmark.dataset(split)
    accumulator = benchmark.metrics()
    model.eval()
    batches = torch.arange(len(dataset)).split(protocol.eval_batch_size or protocol.batch_size)
    for batch in iterate_batches(dataset, batches, benchmark.collate_fn, protocol.num_workers, 0):
        inputs, targets = placement.batch(batch)
        accumulator.update(model(inputs), targets)
    model.train()
    values = {name: float(value) for name, value in accumulator.compute().items()}
    expected = set(benchmark.directions)
    if set(values) != expected:
        raise ValueError(
            f"benchmark {benchmark.name!r}: the metric accumulator returned {sorted(values)}, "
            f"but the tasks declare {sorted(expected)}"
        )
    return values
