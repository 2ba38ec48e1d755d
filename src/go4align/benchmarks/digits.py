"""MultiDigits: Multi-Fashion's construction in miniature, on scikit-learn's bundled 8x8 digits.

Each 8x8 digit ``i`` goes to the top-left of a 12x12 canvas and a partner digit to the
bottom-right (shifted by 4 pixels; the brighter pixel wins where they overlap); tasks: the class
of each digit (10 classes each). The 1,797 images (16 grey levels, rescaled to 0..255) are split
by a seeded permutation into 1,000 train / 300 val / 497 test, and partners are drawn within a
split. The model is the Multi-Fashion LeNet with 3x3 kernels and 16/32 channels; an epoch is
16 steps of 64, so a run takes seconds: this benchmark is for tests and the demo.
"""

from __future__ import annotations

import numpy as np
import torch

from .api import Benchmark, Protocol, TensorTaskDataset
from .fashion import LeNetEncoder, overlay_pairs, to_float_images, two_item_benchmark

__all__ = ["PROTOCOL", "load_digits_images", "make_benchmark"]

SPLIT_SIZES = {"train": 1000, "val": 300, "test": 497}
PROTOCOL = Protocol(
    epochs=20,
    batch_size=64,
    lr=5e-3,
    reporting_rule="best_validation",
    selection="mean",
    method_options={"go4align": {"num_groups": 2}},
)


def load_digits_images() -> tuple[np.ndarray, np.ndarray]:
    """The 1,797 bundled digits as uint8 ``[n, 8, 8]`` (0..255) and int64 labels."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as error:
        raise ImportError(
            "the digits benchmark reads scikit-learn's bundled digits: pip install 'go4align[sklearn]'"
        ) from error
    data = load_digits()
    images = np.rint(data.images * (255 / 16)).astype(np.uint8)
    return images, data.target.astype(np.int64)


def make_benchmark(data_seed: int = 0) -> Benchmark:
    images, labels = load_digits_images()
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(data_seed)).numpy()
    splits, start = {}, 0
    for stream, (split, size) in enumerate(SPLIT_SIZES.items()):
        chosen = order[start : start + size]
        start += size
        canvas, targets = overlay_pairs(images[chosen], labels[chosen], 12, data_seed * 10 + stream)
        splits[split] = TensorTaskDataset(canvas, targets, transform=to_float_images)
    return two_item_benchmark(
        "digits",
        splits,
        lambda: LeNetEncoder(12, kernels=(3, 3), channels=(16, 32)),
        PROTOCOL,
        {"data_seed": data_seed},
    )
