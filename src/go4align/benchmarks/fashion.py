"""Multi-Fashion: two Fashion-MNIST items on one canvas; the tasks are the class of each.

Construction (the Multi-MNIST layout of Pareto MTL, Lin et al. 2019): each 28x28 item ``i`` is
put at the top-left of a 36x36 canvas and a partner item at the bottom-right (shifted by 8
pixels in both directions); where they overlap the brighter pixel wins. Partners are a seeded
permutation of the items of the same split (pairs may share a class). Splits: a fixed,
seeded 54,000 / 6,000 split of the 60,000 training items into train / val, and the 10,000 test
items; ``train_size`` etc. take the first items of each split for short runs.

Model: Pareto MTL's MultiLeNet: shared conv(1->10, 9x9), max-pool, ReLU, conv(10->20, 5x5),
max-pool, ReLU, linear to 50 features, ReLU; per task linear(50->50), ReLU, linear(50->10).
Losses: cross-entropy; metrics: accuracy per task.

The data are the standard IDX files (``train-images-idx3-ubyte`` etc., gzipped or not), read
from ``data_dir`` or from ``/usr/share/datasets/fashion-mnist`` (Debian's
``dataset-fashion-mnist``). Nothing is ever downloaded.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from .api import Benchmark, HardSharing, Metric, Protocol, SampleMean, Task, TensorTaskDataset, task_losses

__all__ = [
    "DEFAULT_DIR",
    "PROTOCOL",
    "read_idx",
    "load_fashion_mnist",
    "overlay_pairs",
    "LeNetEncoder",
    "classifier_head",
    "two_item_benchmark",
    "make_benchmark",
]

DEFAULT_DIR = Path("/usr/share/datasets/fashion-mnist")
INSTALL_HINT = (
    "install it with `apt-get install -y dataset-fashion-mnist` (after apt-get update) or pass --data-dir DIR"
)
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
TASKS = ("top_left", "bottom_right")
IDX_TYPES = {0x08: np.uint8}
# Not a protocol of the paper (which has no Multi-Fashion): a CPU-sized one of ours.
PROTOCOL = Protocol(
    epochs=10,
    batch_size=256,
    lr=1e-3,
    reporting_rule="best_validation",
    selection="mean",
    method_options={"go4align": {"num_groups": 2}},
)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file of unsigned bytes (the MNIST format), gzipped or not."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        data = handle.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in IDX_TYPES:
        raise ValueError(f"{path} is not an IDX file of unsigned bytes (header {data[:4]!r})")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header says shape {shape} ({int(np.prod(shape))} values), file holds {body.size}")
    return body.reshape(shape)


def _find(directory: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz"):
        if (directory / name).is_file():
            return directory / name
    raise FileNotFoundError(f"Fashion-MNIST file {stem}[.gz] not found in {directory}; {INSTALL_HINT}")


def load_fashion_mnist(data_dir: str | os.PathLike | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{"train": (images [60000, 28, 28] uint8, labels [60000]), "test": ...}`` from IDX files."""
    directory = Path(data_dir) if data_dir is not None else DEFAULT_DIR
    if not directory.is_dir():
        raise FileNotFoundError(f"Fashion-MNIST directory {directory} does not exist; {INSTALL_HINT}")
    out = {}
    for split, (images_stem, labels_stem) in FILES.items():
        images, labels = read_idx(_find(directory, images_stem)), read_idx(_find(directory, labels_stem))
        if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
            raise ValueError(
                f"Fashion-MNIST {split} files in {directory} disagree: images {images.shape}, labels {labels.shape}"
            )
        out[split] = (images, labels.astype(np.int64))
    return out


def overlay_pairs(images: np.ndarray, labels: np.ndarray, canvas: int, seed: int) -> tuple[Tensor, dict[str, Tensor]]:
    """Item ``i`` top-left, item ``partner[i]`` bottom-right of a ``canvas``-sized square,
    brighter pixel wins; ``partner`` is a permutation drawn from ``seed``."""
    n, size = images.shape[0], images.shape[1]
    if canvas < size:
        raise ValueError(f"canvas ({canvas}) must be at least the item size ({size})")
    partner = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).numpy()
    out = np.zeros((n, canvas, canvas), dtype=np.uint8)
    out[:, :size, :size] = images
    corner = out[:, canvas - size :, canvas - size :]
    np.maximum(corner, images[partner], out=corner)
    targets = {TASKS[0]: torch.from_numpy(labels), TASKS[1]: torch.from_numpy(labels[partner])}
    return torch.from_numpy(out), targets


def to_float_images(batch: Tensor) -> Tensor:
    """uint8 ``[B, H, W]`` to float ``[B, 1, H, W]`` in [0, 1]."""
    return batch.unsqueeze(1).float().div_(255)


class LeNetEncoder(nn.Module):
    """Two conv / max-pool / ReLU blocks and a linear layer to ``features`` (Pareto MTL's MultiLeNet)."""

    def __init__(
        self, image_size: int, kernels: Sequence[int] = (9, 5), channels: Sequence[int] = (10, 20), features: int = 50
    ):
        super().__init__()
        side = ((image_size - kernels[0] + 1) // 2 - kernels[1] + 1) // 2
        if side < 1:
            raise ValueError(f"image_size {image_size} is too small for kernels {tuple(kernels)}")
        self.body = nn.Sequential(
            nn.Conv2d(1, channels[0], kernels[0]),
            nn.MaxPool2d(2),
            nn.ReLU(),
            nn.Conv2d(channels[0], channels[1], kernels[1]),
            nn.MaxPool2d(2),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(channels[1] * side * side, features),
            nn.ReLU(),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


def classifier_head(features: int = 50, classes: int = 10) -> nn.Module:
    return nn.Sequential(nn.Linear(features, features), nn.ReLU(), nn.Linear(features, classes))


def _correct(prediction: Tensor, target: Tensor) -> Tensor:
    return (prediction.argmax(1) == target).double()


def two_item_benchmark(
    name: str, splits: dict[str, TensorTaskDataset], encoder_factory, protocol: Protocol, options: dict
) -> Benchmark:
    """A benchmark over two-item canvases: tasks top_left and bottom_right, 10 classes each."""
    return Benchmark(
        name=name,
        tasks=[Task(t, Metric(f"{t}_acc", higher_is_better=True)) for t in TASKS],
        datasets=splits.__getitem__,
        model=lambda seed: HardSharing(encoder_factory(), {t: classifier_head() for t in TASKS}),
        losses=task_losses({t: nn.functional.cross_entropy for t in TASKS}),
        metrics=lambda: SampleMean({f"{t}_acc": (t, _correct) for t in TASKS}),
        protocol=protocol,
        options=options,
    )


def _first(n: int | None, name: str, available: int) -> int:
    if n is None:
        return available
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= available:
        raise ValueError(f"{name} must be an int in [1, {available}], got {n!r}")
    return n


def make_benchmark(
    data_dir: str | None = None,
    train_size: int | None = None,
    val_size: int | None = None,
    test_size: int | None = None,
    data_seed: int = 0,
) -> Benchmark:
    """Multi-Fashion; ``*_size`` keep the first items of a split (default: all)."""
    raw = load_fashion_mnist(data_dir)
    images, labels = raw["train"]
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(data_seed)).numpy()
    held_out = len(labels) // 10
    parts = {
        "train": (images[order[held_out:]], labels[order[held_out:]]),
        "val": (images[order[:held_out]], labels[order[:held_out]]),
        "test": raw["test"],
    }
    sizes = {"train": train_size, "val": val_size, "test": test_size}
    splits = {}
    for stream, (split, (x, y)) in enumerate(parts.items()):
        n = _first(sizes[split], f"{split}_size", len(y))
        canvas, targets = overlay_pairs(x[:n], y[:n], 36, data_seed * 10 + stream)
        splits[split] = TensorTaskDataset(canvas, targets, transform=to_float_images)
    # Where the files lie is not part of the benchmark's identity: moving them must not stop a
    # resume, so data_dir is left out of the recorded options.
    options = {
        "train_size": train_size,
        "val_size": val_size,
        "test_size": test_size,
        "data_seed": data_seed,
    }
    return two_item_benchmark("fashion", splits, lambda: LeNetEncoder(36), PROTOCOL, options)
