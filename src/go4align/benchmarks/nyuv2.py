"""NYUv2: semantic segmentation (13 classes), depth and surface normals from one indoor image.

Data: the pre-processed 288x384 layout released with MTAN (lorenmt/mtan), read from a local path,
never downloaded::

    root/train/{image,label,depth,normal}/{0..794}.npy    795 training images
    root/val/{image,label,depth,normal}/{0..653}.npy      654 test images (the reference's "val")

Model: SegNet-MTAN (:class:`~go4align.benchmarks.models.SegNetMTAN`); single-task references use
the plain SegNet (:class:`~go4align.benchmarks.models.SegNetSplit` with one task). Losses, metrics and
augmentation are those of AvivNavon/nash-mtl ``experiments/nyuv2`` (see :mod:`.dense`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from go4align.benchmarks import dense
from go4align.benchmarks.models import build_segnet

TASKS = (dense.SEMANTIC, dense.DEPTH, dense.NORMAL)
NUM_CLASSES = 13
IMAGE_SIZE = (288, 384)
FOLDERS = {dense.SEMANTIC: "label", dense.DEPTH: "depth", dense.NORMAL: "normal"}

HIGHER_IS_BETTER = dense.higher_is_better(TASKS)

STL_REFERENCE = {
    "miou": 38.30,
    "pix_acc": 63.76,
    "abs_err": 0.6754,
    "rel_err": 0.2780,
    "angle_mean": 25.01,
    "angle_median": 19.21,
    "within_11.25": 30.14,
    "within_22.5": 57.20,
    "within_30": 69.15,
}
STL_REFERENCE_SOURCE = (
    "the single-task results the paper family compares against (CAGrad's), as BASE in "
    "AvivNavon/nash-mtl experiments/nyuv2/utils.py, there with rates as fractions"
)

PROTOCOL = {
    **dense.PROTOCOL,
    "batch_size": 2,
    # The reference evaluates with the training batch size, and its per-batch averaged depth and
    # normal metrics depend on it (see dense.DepthErrors).
    "eval_batch_size": 2,
    "go4align_num_groups": 2,
}


class NYUv2(dense.DenseNpyDataset):
    """The NYUv2 MTAN layout (see the module docstring); items ``(image, {task: target})``.

    Arguments as :class:`.dense.DenseNpyDataset`: ``root``, ``split`` (``"train"`` or ``"test"``),
    ``augment``, ``generator``, ``image_size`` (default: the release's, 288x384).
    """

    name = "NYUv2"
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
    """``(len(tasks),)`` losses in task order: segmentation NLL, masked L1 depth, 1 - masked cosine."""
    return dense.task_losses(predictions, targets, tasks)


def metrics(tasks: Sequence[str] = TASKS) -> dense.DenseMetrics:
    """A fresh accumulator of the test metrics (names and directions in :data:`HIGHER_IS_BETTER`)."""
    return dense.DenseMetrics(tasks, NUM_CLASSES)
