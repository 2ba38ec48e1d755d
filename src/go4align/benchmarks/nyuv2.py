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

from pathlib import Path

from go4align import published
from go4align.benchmarks import dense
from go4align.benchmarks.api import Benchmark

TASKS = (dense.SEMANTIC, dense.DEPTH, dense.NORMAL)
NUM_CLASSES = 13
IMAGE_SIZE = (288, 384)
FOLDERS = {dense.SEMANTIC: "label", dense.DEPTH: "depth", dense.NORMAL: "normal"}

HIGHER_IS_BETTER = dense.higher_is_better(TASKS)

# The published single-task reference, keyed by this benchmark's metric names.
STL_REFERENCE = published.NYUV2["stl"]
STL_REFERENCE_SOURCE = published.NYUV2["stl_source"]

# The paper's K for M = 3 tasks.
PROTOCOL = dense.reference_protocol(batch_size=2, method_options={"go4align": {"num_groups": 2}})


class NYUv2(dense.DenseNpyDataset):
    """The NYUv2 MTAN layout (see the module docstring); items ``(image, {task: target})``.

    Arguments as :class:`.dense.DenseNpyDataset`: ``root``, ``split`` (``"train"`` or ``"test"``),
    ``augment``, ``generator``, ``image_size`` (default: the release's, 288x384).
    """

    name = "NYUv2"
    folders = FOLDERS
    num_classes = NUM_CLASSES
    image_size = IMAGE_SIZE


build_model, losses, metrics = dense.module_functions(NUM_CLASSES, TASKS)


def make_benchmark(data_dir: str | Path | None = None, width: int = 64) -> Benchmark:
    """NYUv2 under the paper's protocol (:data:`PROTOCOL`) from the MTAN layout at ``data_dir``;
    ``width``: SegNet-MTAN's first-layer channels (64 in the paper; a few for tests)."""
    return dense.make_dense_benchmark(
        "nyuv2",
        NYUv2,
        data_dir,
        build_model=build_model,
        width=width,
        protocol=PROTOCOL,
        stl_reference=STL_REFERENCE,
    )
