"""For the trainer and grid tests: a two-task benchmark on random data small enough to train in a
second, and a view of a result without what legitimately differs between two identical runs."""

import random

import numpy as np
import torch
from torch import nn

from go4align.benchmarks import Benchmark, HardSharing, Metric, Protocol, SampleMean, Task, task_losses


class NoisyItems(torch.utils.data.Dataset):
    """Items (no get_batch, so batches go through a DataLoader) with augmentation noise drawn
    from python's, numpy's and torch's global generators: resuming must restore all three."""

    def __init__(self, n: int, seed: int, augment: bool):
        generator = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 4, generator=generator)
        self.augment = augment

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        x = self.x[i]
        if self.augment:
            x = x + 0.01 * (random.random() + float(np.random.rand()) + torch.rand(1))
        return x, {"reg": self.x[i].sum(), "cls": (self.x[i, 0] > 0).long()}


def make_tiny(train: torch.utils.data.Dataset | None = None, **protocol) -> Benchmark:
    """Two tasks on random data; dropout in the encoder draws from torch's RNG every step."""
    data = {
        "train": train or NoisyItems(40, 1, True),
        "val": NoisyItems(16, 2, False),
        "test": NoisyItems(16, 3, False),
    }
    return Benchmark(
        name="tiny",
        tasks=[Task("reg", Metric("reg_mse", False)), Task("cls", Metric("cls_acc", True))],
        datasets=data.__getitem__,
        model=lambda seed: HardSharing(
            nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Dropout(0.2)),
            {"reg": nn.Sequential(nn.Linear(8, 1), nn.Flatten(0)), "cls": nn.Linear(8, 2)},
        ),
        losses=task_losses({"reg": nn.functional.mse_loss, "cls": nn.functional.cross_entropy}),
        metrics=lambda: SampleMean(
            {"reg_mse": ("reg", lambda p, t: (p - t) ** 2), "cls_acc": ("cls", lambda p, t: (p.argmax(1) == t).float())}
        ),
        protocol=Protocol(**{"epochs": 3, "batch_size": 6, "lr": 1e-2, **protocol}),
        stl_reference={"reg_mse": 1.0, "cls_acc": 0.5},
    )


def comparable(result: dict) -> dict:
    """A result without what legitimately differs between two identical runs (times, memory, the
    process that wrote it)."""
    epochs = [{k: v for k, v in e.items() if k != "time_s"} for e in result["epochs"]]
    drop = ("time_per_epoch_s", "step_time_ms", "peak_memory_mb", "epochs", "provenance")
    return {**{k: v for k, v in result.items() if k not in drop}, "epochs": epochs}


def identical(a, b) -> bool:
    """Exact equality of state: tensors bit for bit and of one dtype, in nested dicts, lists and
    tuples of one type (the containers that hold model, optimiser and random generators' states)."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(identical(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(identical(x, y) for x, y in zip(a, b))
    return a == b
