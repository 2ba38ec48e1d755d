"""CelebA: 40 binary face attributes, each a task, as in FAMO's experiments.

Data: the aligned-and-cropped release, read from a local path, never downloaded, in either layout::

    root/img_align_celeba/*.jpg             root/Img/img_align_celeba/*.jpg
    root/list_attr_celeba.txt          or   root/Anno/list_attr_celeba.txt
    root/list_eval_partition.txt            root/Eval/list_eval_partition.txt

(left: torchvision's folder; right: the official distribution, which Cranial-XIX/FAMO
``experiments/celeba/data.py`` reads). Attributes ``-1/1`` become ``0/1``; partition ``0/1/2`` is
train/validation/test (162,770 / 19,867 / 19,962 images). Images are resized to 64x64 (aspect ratio
not kept) with PIL's bilinear filter and scaled to ``[0, 1]``, with no normalisation, exactly what
the reference's ``transforms.Resize((64, 64))`` + ``ToTensor()`` do. Reading jpg files needs pillow
(``pip install go4align[vision]``).

Model: :class:`~go4align.benchmarks.models.CelebACNN`; loss: binary cross-entropy of each head's
probability (the reference's ``BCELoss``); metric: F1 per attribute at threshold 0.5.

Protocol: :data:`PROTOCOL`, the reference trainer's; as there, a weighting's own parameters are not
trained (``Protocol.train_weighting_parameters=False``): UW is the published row's LS with halved
losses unless the protocol is changed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from go4align import published
from go4align.benchmarks.api import Benchmark, Metric, Protocol, Task, _check_positive_int
from go4align.benchmarks.models import CelebACNN

ATTRIBUTES = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs",
    "Big_Lips", "Big_Nose", "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair", "Bushy_Eyebrows",
    "Chubby", "Double_Chin", "Eyeglasses", "Goatee", "Gray_Hair", "Heavy_Makeup", "High_Cheekbones",
    "Male", "Mouth_Slightly_Open", "Mustache", "Narrow_Eyes", "No_Beard", "Oval_Face", "Pale_Skin",
    "Pointy_Nose", "Receding_Hairline", "Rosy_Cheeks", "Sideburns", "Smiling", "Straight_Hair",
    "Wavy_Hair", "Wearing_Earrings", "Wearing_Hat", "Wearing_Lipstick", "Wearing_Necklace",
    "Wearing_Necktie", "Young",
)  # fmt: skip
TASKS = ATTRIBUTES
IMAGE_SIZE = 64
SPLITS = {"train": 0, "val": 1, "test": 2}

# One F1 score per attribute, in percent, higher is better.
HIGHER_IS_BETTER = {f"f1_{attribute}": True for attribute in ATTRIBUTES}

# No single-task F1 values are published for this benchmark (None): the references are produced
# by the harness's STL runs (40 single-task runs of this protocol).
STL_REFERENCE: dict[str, float] | None = published.CELEBA["stl"]
STL_REFERENCE_SOURCE = published.CELEBA["stl_source"]

# FAMO's trainer: 15 epochs of batch 256, Adam 3e-4, no scheduler; test metrics at the first epoch
# with the highest mean validation F1 (the trainer keeps the first of equal scores). The paper
# publishes no K for CelebA (M = 40), so GO4Align runs with its default unless a spec gives one.
# That trainer's Adam gets only the model's parameters (experiments/celeba/trainer.py), unlike the
# other benchmarks' trainers, so UW's log-variances stay at 0 and the published UW row is LS with
# the losses halved: train_weighting_parameters=False reproduces it; trained UW (at its lr 0.025)
# is PROTOCOL.replace(train_weighting_parameters=True), or `train_weighting_parameters = true`
# in the [protocol] table of a config file.
PROTOCOL = Protocol(
    epochs=15,
    batch_size=256,
    lr=3e-4,
    reporting_rule="best_validation",
    selection="mean",
    train_weighting_parameters=False,
)

_LAYOUTS = (
    ("img_align_celeba", "list_attr_celeba.txt", "list_eval_partition.txt"),
    ("Img/img_align_celeba", "Anno/list_attr_celeba.txt", "Eval/list_eval_partition.txt"),
)


def _locate(root: Path) -> tuple[Path, Path, Path]:
    for layout in _LAYOUTS:
        paths = tuple(root / part for part in layout)
        if paths[0].is_dir() and paths[1].is_file() and paths[2].is_file():
            return paths
    expected = " or ".join("{" + ", ".join(layout) + "}" for layout in _LAYOUTS)
    missing = [str(root / part) for part in _LAYOUTS[0] if not (root / part).exists()]
    raise FileNotFoundError(f"expected CelebA layout at {root}: {expected}; missing e.g. {missing}")


# Whitespace to drop when packing a row's values into one character each ("1" or "N" for "-1").
_DROP_WHITESPACE = str.maketrans("", "", " \t\r")


def _read_attributes(path: Path) -> tuple[list[str], np.ndarray]:
    """File names and the ``(n, 40)`` boolean labels of ``list_attr_celeba.txt``.

    Each row's values are packed into a 40-character string and checked in one numpy pass: splitting
    the 8 million value tokens one by one takes many seconds.
    """
    lines = path.read_text().splitlines()
    if len(lines) < 2 or not lines[0].strip().isdigit():
        raise ValueError(f"{path}: expected an image count on line 1, then the 40 attribute names")
    header = tuple(lines[1].split())
    if header != ATTRIBUTES:
        raise ValueError(f"{path}: line 2 must list the 40 CelebA attributes {ATTRIBUTES}, got {header}")

    def malformed(number: int) -> ValueError:
        return ValueError(
            f"{path} line {number}: expected a file name and 40 values of -1 or 1, got {lines[number - 1]!r}"
        )

    names, packed, numbers = [], [], []
    for number, line in enumerate(lines[2:], start=3):
        fields = line.split(None, 1)
        if not fields:
            continue
        values = fields[1].replace("-1", "N").translate(_DROP_WHITESPACE) if len(fields) == 2 else ""
        if len(values) != len(ATTRIBUTES):
            raise malformed(number)
        names.append(fields[0])
        packed.append(values)
        numbers.append(number)
    if len(names) != int(lines[0]):
        raise ValueError(f"{path}: line 1 announces {int(lines[0])} images, found {len(names)} rows")
    # A non-ascii character becomes "?" (one byte), so rows keep 40 bytes and fail the check below.
    codes = np.frombuffer("".join(packed).encode("ascii", "replace"), dtype=np.uint8).reshape(-1, len(ATTRIBUTES))
    positive = codes == ord("1")
    bad_rows = np.flatnonzero(~(positive | (codes == ord("N"))).all(axis=1))
    if bad_rows.size:
        raise malformed(numbers[bad_rows[0]])
    return names, positive


def _read_partition(path: Path) -> dict[str, int]:
    partition = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
            raise ValueError(f"{path} line {number}: expected '<file name> <0, 1 or 2>', got {line!r}")
        partition[fields[0]] = int(fields[1])
    return partition


def _pil_image():
    # Imported on use, not in the module: the package must import without the optional extra, and
    # a dataset holding the module could not be pickled into DataLoader workers.
    try:
        from PIL import Image
    except ImportError as error:
        raise ImportError("reading CelebA's jpg files needs pillow: pip install go4align[vision]") from error
    return Image


class CelebA(Dataset):
    """CelebA's aligned faces with the 40 attributes; items ``(image, {attribute: label})``.

    ``image`` is float32 ``(3, image_size, image_size)`` in ``[0, 1]``; each label a float32 scalar
    0 or 1 (a batch collates them to ``(B,)``).

    Args:
        root: the folder holding one of the two layouts in the module docstring.
        split: ``"train"``, ``"val"`` or ``"test"`` (partition 0, 1, 2).
        image_size: side of the square the images are resized to (64 in the protocol).
    """

    def __init__(self, root: str | Path, split: str = "train", image_size: int = IMAGE_SIZE):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {tuple(SPLITS)}, got {split!r}")
        if not isinstance(image_size, int) or isinstance(image_size, bool) or image_size < 1:
            raise ValueError(f"image_size must be a positive int, got {image_size!r}")
        _pil_image()  # fail at construction, not in the first batch, when pillow is missing
        self.root = Path(root).expanduser()
        self.split = split
        self.image_size = image_size
        self.image_dir, attribute_file, partition_file = _locate(self.root)
        names, labels = _read_attributes(attribute_file)
        partition = _read_partition(partition_file)
        unassigned = [name for name in names if name not in partition]
        if unassigned:
            raise ValueError(
                f"{partition_file} assigns no split to {len(unassigned)} image(s) of {attribute_file}, "
                f"e.g. {unassigned[:3]}"
            )
        keep = np.array([partition[name] == SPLITS[split] for name in names], dtype=bool)
        self.files = [name for name, kept in zip(names, keep) if kept]
        self.labels = torch.from_numpy(labels[keep].astype(np.float32))

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        path = self.image_dir / self.files[index]
        if not path.is_file():
            raise FileNotFoundError(f"expected CelebA image {path}, listed in the attribute file")
        Image = _pil_image()
        with Image.open(path) as image:
            image = image.convert("RGB").resize((self.image_size, self.image_size), Image.Resampling.BILINEAR)
        pixels = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).float().div(255)
        return pixels, dict(zip(ATTRIBUTES, self.labels[index]))

    def __repr__(self) -> str:
        return f"CelebA(root={str(self.root)!r}, split={self.split!r}, image_size={self.image_size})"


def build_model(tasks: Sequence[str] = TASKS, width: int = 64) -> CelebACNN:
    """FAMO's CelebA CNN with one head per task (a single attribute for single-task runs)."""
    unknown = [task for task in tasks if task not in ATTRIBUTES]
    if unknown:
        raise ValueError(f"unknown CelebA attribute(s) {unknown}; expected names from ATTRIBUTES")
    return CelebACNN(tasks, width=width)


def losses(
    predictions: Mapping[str, torch.Tensor],
    targets: Mapping[str, torch.Tensor],
    tasks: Sequence[str] = TASKS,
) -> torch.Tensor:
    """``(len(tasks),)`` binary cross-entropies (batch means) of the heads' probabilities, in task order."""
    for task in tasks:
        for what, given in (("predictions", predictions), ("targets", targets)):
            if task not in given:
                raise KeyError(f"{what} lack task {task!r}; they hold {len(given)} tasks")
    p = torch.stack([predictions[task] for task in tasks], dim=1)
    y = torch.stack([targets[task] for task in tasks], dim=1).to(p.dtype)
    if p.ndim != 2 or p.shape != y.shape:
        raise ValueError(f"each prediction and target must be (B,), got stacked {tuple(p.shape)} and {tuple(y.shape)}")
    return F.binary_cross_entropy(p, y, reduction="none").mean(dim=0)


class F1Scores:
    """F1 per task at threshold 0.5, from true/false positive and false negative counts over the epoch.

    F1 = 2 TP / (2 TP + FP + FN), in percent, 0 when an attribute has no positive prediction and
    no positive label (the reference's precision/recall form with 1e-8 guards, without the guards).
    A prediction counts as positive when its probability is strictly above 0.5, as the reference.
    """

    def __init__(self, tasks: Sequence[str] = TASKS):
        self.tasks = tuple(tasks)
        if not self.tasks or len(set(self.tasks)) != len(self.tasks):
            raise ValueError(f"tasks must be a non-empty sequence of distinct names, got {tasks!r}")
        self._counts: torch.Tensor | None = None

    @property
    def higher_is_better(self) -> dict[str, bool]:
        return {f"f1_{task}": True for task in self.tasks}

    @torch.no_grad()
    def update(self, predictions: Mapping[str, torch.Tensor], targets: Mapping[str, torch.Tensor]) -> None:
        missing = [t for t in self.tasks if t not in predictions or t not in targets]
        if missing:
            raise KeyError(f"predictions or targets lack task(s) {missing[:3]}")
        positive = torch.stack([predictions[t] > 0.5 for t in self.tasks])
        truth = torch.stack([targets[t] == 1 for t in self.tasks])
        if positive.shape != truth.shape:
            raise ValueError(f"predictions {tuple(positive.shape)} and targets {tuple(truth.shape)} differ in shape")
        counts = torch.stack([(positive & truth).sum(1), (positive & ~truth).sum(1), (~positive & truth).sum(1)])
        self._counts = counts if self._counts is None else self._counts + counts

    def compute(self) -> dict[str, float]:
        if self._counts is None:
            raise ValueError("no batch was accumulated; call update() first")
        tp, fp, fn = self._counts.double()
        denominator = 2 * tp + fp + fn
        f1 = torch.where(denominator > 0, 2 * tp / denominator.clamp(min=1), torch.zeros_like(tp))
        return {f"f1_{task}": 100 * value for task, value in zip(self.tasks, f1.tolist())}

    def __repr__(self) -> str:
        return f"F1Scores(<{len(self.tasks)} tasks>)"


def metrics(tasks: Sequence[str] = TASKS) -> F1Scores:
    """A fresh accumulator of the per-attribute F1 scores (names in :data:`HIGHER_IS_BETTER`)."""
    return F1Scores(tasks)


def make_benchmark(data_dir: str | Path | None = None, width: int = 64) -> Benchmark:
    """CelebA under FAMO's protocol (:data:`PROTOCOL`) from either layout at ``data_dir``;
    ``width``: the CNN's first-layer channels (64 in the reference; a few for tests).

    No STL reference is published: ``go4align bench --methods stl`` trains the 40 single-task
    models, and the report then takes Delta-m against them.
    """
    if data_dir is None:
        raise ValueError(
            "the celeba benchmark needs data_dir (--data-dir DIR): the folder holding img_align_celeba/, "
            "list_attr_celeba.txt and list_eval_partition.txt (or the official Img/, Anno/, Eval/ layout)"
        )
    _check_positive_int("width", width)
    splits = {split: CelebA(data_dir, split) for split in SPLITS}
    return Benchmark(
        name="celeba",
        tasks=[Task(attribute, Metric(f"f1_{attribute}", higher_is_better=True)) for attribute in ATTRIBUTES],
        datasets=splits.__getitem__,
        model=lambda seed: build_model(TASKS, width),
        losses=losses,
        metrics=metrics,
        protocol=PROTOCOL,
        stl_reference=STL_REFERENCE,
        # Where the files lie is not part of the benchmark's identity (see fashion); the width is.
        options={"width": width},
    )
