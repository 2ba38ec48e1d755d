"""CityScapes: 7-class semantic segmentation and (inverse) depth from one street image.

Data: the pre-processed 128x256 layout released with MTAN (lorenmt/mtan, "cityscapes2"), read from
a local path, never downloaded. The release holds 2-, 7- and 19-class labels; the protocol uses the
7-class ones (``label_7``, as Cranial-XIX/FAMO ``experiments/cityscapes/data.py``)::

    root/train/{image,label_7,depth}/{0..2974}.npy    2975 training images
    root/val/{image,label_7,depth}/{0..499}.npy       500 test images (the reference's "val")

Model, losses, metrics and augmentation as NYUv2 without the normals (see :mod:`.dense`).
"""

from __future__ import annotations

from pathlib import Path

from go4align import published
from go4align.benchmarks import dense
from go4align.benchmarks.api import Benchmark

TASKS = (dense.SEMANTIC, dense.DEPTH)
NUM_CLASSES = 7
IMAGE_SIZE = (128, 256)
FOLDERS = {dense.SEMANTIC: "label_7", dense.DEPTH: "depth"}

HIGHER_IS_BETTER = dense.higher_is_better(TASKS)

# The published single-task reference, keyed by this benchmark's metric names.
STL_REFERENCE = published.CITYSCAPES["stl"]
STL_REFERENCE_SOURCE = published.CITYSCAPES["stl_source"]

# The paper's K for M = 2 tasks. FAMO's weight decay 1e-2 is that of its CityScapes script
# (Cranial-XIX/FAMO experiments/cityscapes), which produced the FAMO row the paper copies; its
# other scripts use FAMO's default, 1e-3.
PROTOCOL = dense.reference_protocol(
    batch_size=8, method_options={"go4align": {"num_groups": 2}, "famo": {"gamma": 1e-2}}
)


class CityScapes(dense.DenseNpyDataset):
    """The CityScapes MTAN layout (see the module docstring); items ``(image, {task: target})``.

    Arguments as :class:`.dense.DenseNpyDataset`: ``root``, ``split`` (``"train"`` or ``"test"``),
    ``augment``, ``generator``, ``image_size`` (default: the release's, 128x256).
    """

    name = "CityScapes"
    folders = FOLDERS
    num_classes = NUM_CLASSES
    image_size = IMAGE_SIZE


build_model, losses, metrics = dense.module_functions(NUM_CLASSES, TASKS)


def make_benchmark(data_dir: str | Path | None = None, width: int = 64) -> Benchmark:
    """CityScapes under the paper's protocol (:data:`PROTOCOL`) from the MTAN layout at ``data_dir``;
    ``width``: SegNet-MTAN's first-layer channels (64 in the paper; a few for tests)."""
    return dense.make_dense_benchmark(
        "cityscapes",
        CityScapes,
        data_dir,
        build_model=build_model,
        width=width,
        protocol=PROTOCOL,
        stl_reference=STL_REFERENCE,
    )
