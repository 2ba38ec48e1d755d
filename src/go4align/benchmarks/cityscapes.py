"""CityScapes: 7-class semantic segmentation and (inverse) depth from one street image.

Data: the pre-processed 128x256 layout released with MTAN (lorenmt/mtan, "cityscapes2"), read from
a local path, never downloaded. The release holds 2-, 7- and 19-class labels; the protocol uses the
7-class ones (``label_7``, as Cranial-XIX/FAMO ``experiments/cityscapes/data.py``)::

    root/train/{image,label_7,depth}/{0..2974}.npy    2975 training images
    root/val/{image,label_7,depth}/{0..499}.npy       500 test images (the reference's "val")

Model, losses, metrics and augmentation as NYUv2 without the normals (see :mod:`.dense`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from go4align.benchmarks import dense
from go4align.benchmarks.models import build_segnet

TASKS = (dense.SEMANTIC, dense.DEPTH)
NUM_CLASSES = 7
IMAGE_SIZE = (128, 256)
FOLDERS = {dense.SEMANTIC: "label_7", dense.DEPTH: "depth"}

HIGHER_IS_BETTER = dense.higher_is_better(TASKS)

STL_REFERENCE = {"miou": 74.01, "pix_acc": 93.16, "abs_err": 0.0125, "rel_err": 27.77}
STL_REFERENCE_SOURCE = (
    "the single-task results the paper family compares against (CAGrad's), as BASE in "
    "Cranial-XIX/FAMO experiments/cityscapes/utils.py, there with rates as fractions"
)

PROTOCOL = {
    **dense.PROTOCOL,
    "batch_size": 8,
    # The reference evaluates with the training batch size, and its per-batch averaged depth
    # metrics depend on it (see dense.DepthErrors).
    "eval_batch_size": 8,
    "go4align_num_groups": 2,
}


class CityScapes(dense.DenseNpyDataset):
    """The CityScapes MTAN layout (see the module docstring); items ``(image, {task: target})``.

    Arguments as :class:`.dense.DenseNpyDataset`: ``root``, ``split`` (``"train"`` or ``"test"``),
    ``augment``, ``generator``, ``image_size`` (default: the release's, 128x256).
    """

    name = "CityScapes"
    folders = FOLDERS
    num_classes = NUM_CLASSES
    image_size = IMAGE_SIZE


def build_model(architecture: str = "mtan", tasks: Sequence[str] = TASKS, width: int = 64) -> nn.Module:
    """SegNet-MTAN (``"mtan"``, the protocol's model) or the plain SegNet (``"split"``; with one task
    it is the single-task model); ``width`` is the first layer's channel count (64 in the paper)."""
    return build_segnet(architecture, tasks, num_classes=NUM_CLASSES, width=width)


def losses(
    predictions: Mapping[str, torch.Tensor],
    targets: Mapping[str, torch.Tensor],
    tasks: Sequence[str] = TASKS,
) -> torch.Tensor:
    """``(len(tasks),)`` losses in task order: segmentation NLL, masked L1 depth."""
    return dense.task_losses(predictions, targets, tasks)


def metrics(tasks: Sequence[str] = TASKS) -> dense.DenseMetrics:
    """A fresh accumulator of the test metrics (names and directions in :data:`HIGHER_IS_BETTER`)."""
    return dense.DenseMetrics(tasks, NUM_CLASSES)
