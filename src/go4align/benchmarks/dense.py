"""Dense prediction shared by NYUv2 and CityScapes: the MTAN .npy layout, its augmentation, losses, metrics.

Both benchmarks use the pre-processed data released with MTAN (lorenmt/mtan) and the training code of
the Nash-MTL family (AvivNavon/nash-mtl ``experiments/nyuv2``; its CityScapes twin is
Cranial-XIX/FAMO ``experiments/cityscapes``). Everything here replicates that code; where it does
something surprising, the docstring says so.

Tasks are named by their kind, which fixes the loss, the metrics and the model's output layer:

- ``"semantic"``: per-pixel class log-probabilities ``(B, C, H, W)``; target ``(B, H, W)`` int64,
  ``-1`` = unlabelled.
- ``"depth"``: ``(B, 1, H, W)``; target ``(B, 1, H, W)``, ``0`` = no measurement.
- ``"normal"``: unit vectors ``(B, 3, H, W)``; target ``(B, 3, H, W)``, all-zero = no measurement.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset, get_worker_info

from go4align.benchmarks.api import Benchmark, Metric, Protocol, Task, _check_positive_int

SEMANTIC, DEPTH, NORMAL = "semantic", "depth", "normal"
TASK_KINDS = (SEMANTIC, DEPTH, NORMAL)
IGNORE_INDEX = -1

# Metric names per task, each mapped to "higher is better". Rates (mIoU, pixel accuracy, the
# fractions of normals within an angle) are in percent, as the papers print them and as the STL
# references are given, so that Delta-m can be computed directly.
METRICS = {
    SEMANTIC: {"miou": True, "pix_acc": True},
    DEPTH: {"abs_err": False, "rel_err": False},
    NORMAL: {
        "angle_mean": False,
        "angle_median": False,
        "within_11.25": True,
        "within_22.5": True,
        "within_30": True,
    },
}
_ANGLE_THRESHOLDS = (11.25, 22.5, 30.0)

# The MTAN release names the test split "val"; there is no separate validation split.
SPLIT_FOLDERS = {"train": "train", "test": "val"}
# On-disk channels after (H, W): the label is stored as (H, W), the others channel-last.
_STORED_CHANNELS = {"image": 3, SEMANTIC: None, DEPTH: 1, NORMAL: 3}
# The reference RandomScaleCrop: bilinear for the image and normals, nearest for labels and depth.
_RESIZE_MODE = {SEMANTIC: "nearest", DEPTH: "nearest", NORMAL: "bilinear"}


def check_tasks(tasks: Sequence[str]) -> tuple[str, ...]:
    """Return ``tasks`` as a tuple after checking it is a non-empty list of distinct task kinds."""
    tasks = tuple(tasks)
    if not tasks:
        raise ValueError("tasks must name at least one task, got an empty sequence")
    unknown = [t for t in tasks if t not in TASK_KINDS]
    if unknown:
        raise ValueError(f"unknown dense task(s) {unknown}; expected names from {TASK_KINDS}")
    if len(set(tasks)) != len(tasks):
        raise ValueError(f"tasks must be distinct, got {tasks}")
    return tasks


def higher_is_better(tasks: Sequence[str]) -> dict[str, bool]:
    """Metric names of ``tasks`` in order, each mapped to whether higher is better."""
    return {name: up for task in check_tasks(tasks) for name, up in METRICS[task].items()}


# ---------------------------------------------------------------------------------------------
# Data


class DenseNpyDataset(Dataset):
    """The MTAN pre-processed layout ``root/{train,val}/{folder}/{i}.npy``, ``i = 0..n-1``.

    Items are ``(image, targets)``: ``image`` float32 ``(3, H, W)`` and ``targets`` a dict from task
    to tensor (shapes in the module docstring). On disk the image is ``(H, W, 3)``, the label
    ``(H, W)`` (float, ``-1`` = unlabelled), depth ``(H, W, 1)`` and normals ``(H, W, 3)``.

    A benchmark subclasses it and sets the class attributes ``name`` (for error messages),
    ``folders`` (task -> folder under the split; the image folder is always ``image``),
    ``num_classes`` (labels must lie in ``[-1, num_classes)``) and ``image_size`` (the release's).

    Args:
        root: the folder holding ``train/`` and ``val/``.
        split: ``"train"`` or ``"test"`` (read from ``val/``, the reference's test set).
        augment: apply the reference augmentation (random scale-crop, then a horizontal flip with
            probability 1/2); see :func:`random_scale_crop` and :func:`random_horizontal_flip`. The
            protocol applies it to the training split.
        generator: random source of the augmentation; ``None`` uses torch's global generator, which
            a ``DataLoader`` re-seeds in every worker and every epoch. An explicit generator
            cannot be used with ``DataLoader`` workers: each would hold a copy of it and repeat the
            same augmentations, so that raises an error.
        image_size: ``(H, W)`` every array must have; ``None`` for the release's size.
    """

    name: str
    folders: Mapping[str, str]
    num_classes: int
    image_size: tuple[int, int]

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        augment: bool = False,
        generator: torch.Generator | None = None,
        image_size: tuple[int, int] | None = None,
    ):
        if split not in SPLIT_FOLDERS:
            raise ValueError(f"split must be one of {tuple(SPLIT_FOLDERS)}, got {split!r}")
        if image_size is not None:
            if not (
                isinstance(image_size, (tuple, list))
                and len(image_size) == 2
                and all(isinstance(v, int) and v >= 1 for v in image_size)
            ):
                raise ValueError(f"image_size must be (height, width) of positive ints, got {image_size}")
            self.image_size = tuple(image_size)
        self.root = Path(root).expanduser()
        self.split = split
        self.augment = augment
        self.generator = generator
        self._split_dir = self.root / SPLIT_FOLDERS[split]
        self._length = self._check_layout()

    def _layout_error(self, problem: str) -> FileNotFoundError:
        return FileNotFoundError(f"expected {self.name} .npy layout at {self.root}: {problem}")

    def _check_layout(self) -> int:
        if not self.root.is_dir():
            raise self._layout_error(f"{self.root} is not a directory")
        if not self._split_dir.is_dir():
            raise self._layout_error(f"missing {self._split_dir}")
        indices = None
        for folder in ("image", *self.folders.values()):
            found = _indices_in(self._split_dir / folder, self._layout_error)
            if indices is None:
                indices = found
            elif found != indices:
                raise self._layout_error(
                    f"{self._split_dir / folder} holds {len(found)} files, "
                    f"{self._split_dir / 'image'} holds {len(indices)}; expected the same 0..n-1"
                )
        return len(indices)

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if not 0 <= index < self._length:
            raise IndexError(f"index {index} out of range for {self._length} {self.split} items")
        image = self._load("image", "image", index)
        targets = {task: self._load(task, folder, index) for task, folder in self.folders.items()}
        if self.augment:
            if self.generator is not None and get_worker_info() is not None:
                raise RuntimeError(
                    "an explicit augmentation generator is copied into every DataLoader worker, "
                    "which would then repeat the same augmentations; pass generator=None and seed "
                    "the DataLoader instead"
                )
            image, targets = random_scale_crop(image, targets, generator=self.generator)
            image, targets = random_horizontal_flip(image, targets, generator=self.generator)
        if SEMANTIC in targets:
            targets[SEMANTIC] = targets[SEMANTIC].long()
        return image, targets

    def _load(self, kind: str, folder: str, index: int) -> torch.Tensor:
        path = self._split_dir / folder / f"{index}.npy"
        array = np.load(path)
        channels = _STORED_CHANNELS[kind]
        shape = self.image_size if channels is None else (*self.image_size, channels)
        if array.shape != shape:
            raise ValueError(f"{path} has shape {array.shape}, expected {shape} for {self.name} {kind}")
        tensor = torch.as_tensor(array, dtype=torch.float32)
        if kind == SEMANTIC:
            bad = (tensor < IGNORE_INDEX) | (tensor >= self.num_classes) | (tensor != tensor.round())
            if bad.any():
                raise ValueError(
                    f"{path} holds label {tensor[bad][0].item()}; expected integers in "
                    f"[{IGNORE_INDEX}, {self.num_classes}) ({IGNORE_INDEX} = unlabelled)"
                )
            return tensor
        return tensor.permute(2, 0, 1).contiguous()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, "
            f"image_size={self.image_size}, augment={self.augment}, generator={self.generator})"
        )


def _indices_in(folder: Path, layout_error) -> set[int]:
    if not folder.is_dir():
        raise layout_error(f"missing {folder}")
    stems = [p.stem for p in folder.glob("*.npy")]
    if not stems:
        raise layout_error(f"{folder} holds no .npy files")
    if not all(s.isdigit() for s in stems) or set(map(int, stems)) != set(range(len(stems))):
        odd = sorted(stems)[:3]
        raise layout_error(f"{folder} must hold files 0.npy..{len(stems) - 1}.npy, found e.g. {odd}")
    return set(map(int, stems))


def random_scale_crop(
    image: torch.Tensor,
    targets: Mapping[str, torch.Tensor],
    scales: Sequence[float] = (1.0, 1.2, 1.5),
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The reference RandomScaleCrop: zoom in by a random scale, keeping the image size.

    Picks ``s`` from ``scales`` and a random ``int(H / s) x int(W / s)`` window, then resizes the
    window back to ``H x W``: bilinear (``align_corners=True``) for the image and normals, nearest for
    labels and depth. Depth is divided by ``s``, since zooming in by ``s`` looks like moving the
    camera ``s`` times closer. Normals are not renormalised after interpolation, as in the reference.

    Args:
        image: ``(3, H, W)``.
        targets: task -> ``(H, W)`` labels or ``(C, H, W)`` maps.
        scales: candidate zoom factors, each >= 1.
        generator: random source; ``None`` for torch's global one.
    """
    if not scales or min(scales) < 1:
        raise ValueError(f"scales must be a non-empty sequence of factors >= 1, got {scales}")
    height, width = image.shape[-2:]
    scale = scales[int(torch.randint(len(scales), (1,), generator=generator))]
    h, w = int(height / scale), int(width / scale)
    top = int(torch.randint(height - h + 1, (1,), generator=generator))
    left = int(torch.randint(width - w + 1, (1,), generator=generator))

    def crop_resize(x: torch.Tensor, mode: str) -> torch.Tensor:
        window = x[None, ..., top : top + h, left : left + w]
        corners = {"align_corners": True} if mode == "bilinear" else {}
        return F.interpolate(window, size=(height, width), mode=mode, **corners)[0]

    out = {}
    for task, target in targets.items():
        if task == SEMANTIC:
            out[task] = crop_resize(target[None].float(), "nearest")[0].to(target.dtype)
        else:
            out[task] = crop_resize(target, _RESIZE_MODE[task])
    if DEPTH in out:
        out[DEPTH] = out[DEPTH] / scale
    return crop_resize(image, "bilinear"), out


def random_horizontal_flip(
    image: torch.Tensor,
    targets: Mapping[str, torch.Tensor],
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Mirror image and targets left-right with probability 1/2 (the reference's second step).

    A mirrored normal field points the other way along x, so its x component changes sign.
    """
    if torch.rand(1, generator=generator) >= 0.5:
        return image, dict(targets)
    out = {task: target.flip(-1) for task, target in targets.items()}
    if NORMAL in out:
        out[NORMAL] = torch.cat([-out[NORMAL][:1], out[NORMAL][1:]])
    return image.flip(-1), out


# ---------------------------------------------------------------------------------------------
# Losses


def valid_mask(target: torch.Tensor) -> torch.Tensor:
    """``(B, 1, H, W)`` bool: pixels whose target channels do not sum to zero (the reference mask).

    For depth this means "measured". For normals the reference tests the sum, not the norm, so a
    true normal whose components happen to sum to exactly zero counts as missing; kept as is.
    """
    return target.sum(dim=1, keepdim=True) != 0


def _check_same_shape(task: str, prediction: torch.Tensor, target: torch.Tensor) -> None:
    if prediction.ndim != 4 or prediction.shape != target.shape:
        raise ValueError(
            f"{task}: prediction shape {tuple(prediction.shape)} and target shape "
            f"{tuple(target.shape)} must be equal and (B, C, H, W)"
        )


def _masked_pixel_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    # The reference divides by the number of valid pixels; at least 1 keeps a batch without any
    # valid pixel at loss 0 instead of NaN (the reference would divide by zero), with no host sync.
    return (values * mask).sum() / mask.sum().clamp(min=1)


def semantic_loss(log_probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood over labelled pixels (``-1`` ignored)."""
    if log_probs.ndim != 4 or labels.shape != (log_probs.shape[0], *log_probs.shape[2:]):
        raise ValueError(
            f"semantic: log-probabilities {tuple(log_probs.shape)} must be (B, C, H, W) and labels "
            f"{tuple(labels.shape)} (B, H, W)"
        )
    return F.nll_loss(log_probs, labels, ignore_index=IGNORE_INDEX)


def depth_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 error averaged over pixels with a depth measurement (target != 0)."""
    _check_same_shape(DEPTH, prediction, target)
    return _masked_pixel_mean((prediction - target).abs(), valid_mask(target))


def normal_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - cosine similarity averaged over pixels with a normal (prediction has unit length)."""
    _check_same_shape(NORMAL, prediction, target)
    return 1 - _masked_pixel_mean(prediction * target, valid_mask(target))


_LOSSES = {SEMANTIC: semantic_loss, DEPTH: depth_loss, NORMAL: normal_loss}


def task_losses(
    predictions: Mapping[str, torch.Tensor],
    targets: Mapping[str, torch.Tensor],
    tasks: Sequence[str],
) -> torch.Tensor:
    """The losses of ``tasks``, in that order, as one ``(len(tasks),)`` tensor."""
    for task in tasks:
        for what, given in (("predictions", predictions), ("targets", targets)):
            if task not in given:
                raise KeyError(f"{what} lack task {task!r}; they hold {sorted(given)}")
    return torch.stack([_LOSSES[task](predictions[task], targets[task]) for task in tasks])


# ---------------------------------------------------------------------------------------------
# Metrics


class ConfusionMatrix:
    """mIoU and pixel accuracy from a confusion matrix accumulated over all pixels of the epoch.

    As the reference ``ConfMatrix``: pixels labelled outside ``[0, num_classes)`` are ignored,
    pixel accuracy = trace / total, IoU_c = n_cc / (row_c + col_c - n_cc). A class absent from both
    the labels and the predictions has no IoU; the reference then returns NaN for mIoU, here it is
    left out of the mean. Values are in percent.
    """

    def __init__(self, num_classes: int):
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        self.num_classes = num_classes
        self.matrix: torch.Tensor | None = None

    @torch.no_grad()
    def update(self, scores: torch.Tensor, labels: torch.Tensor) -> None:
        """``scores`` ``(B, C, H, W)`` (any monotone scores, e.g. log-probabilities), ``labels`` ``(B, H, W)``."""
        n = self.num_classes
        if scores.ndim != 4 or scores.shape[1] != n or labels.shape != (scores.shape[0], *scores.shape[2:]):
            raise ValueError(
                f"semantic: scores {tuple(scores.shape)} must be (B, {n}, H, W) and labels "
                f"{tuple(labels.shape)} (B, H, W)"
            )
        predicted = scores.argmax(dim=1).flatten()
        labels = labels.flatten().long()
        keep = (labels >= 0) & (labels < n)
        counts = torch.bincount(n * labels[keep] + predicted[keep], minlength=n * n).reshape(n, n)
        self.matrix = counts if self.matrix is None else self.matrix + counts

    def compute(self) -> dict[str, float]:
        if self.matrix is None or self.matrix.sum() == 0:
            raise ValueError("no labelled pixel was accumulated; call update() with labelled data first")
        h = self.matrix.double()
        hits = h.diag()
        iou = hits / (h.sum(0) + h.sum(1) - hits)
        return {"miou": 100 * iou.nanmean().item(), "pix_acc": 100 * (hits.sum() / h.sum()).item()}


class _BatchAverage:
    """Statistics computed per batch and averaged over batches with equal weight, as the reference.

    The reference trainer adds each test batch's statistics divided by the number of batches, so
    the result depends on the evaluation batch size (the reference evaluates with the training
    batch size). A batch without any valid pixel is skipped (the reference would produce NaN).
    """

    def __init__(self):
        self._sums: dict[str, float] = {}
        self._batches = 0

    def _add(self, stats: dict[str, float]) -> None:
        for name, value in stats.items():
            self._sums[name] = self._sums.get(name, 0.0) + value
        self._batches += 1

    def compute(self) -> dict[str, float]:
        if not self._batches:
            raise ValueError("no batch with a valid pixel was accumulated; call update() first")
        return {name: total / self._batches for name, total in self._sums.items()}


class DepthErrors(_BatchAverage):
    """Absolute and relative depth error over pixels with a depth measurement (target != 0).

    Per batch, as the reference ``depth_error``: abs = mean ``|p - t|``, rel = mean ``|p - t| / t`` over the
    valid pixels of the batch (pixel-weighted within the batch); then the batch average.
    """

    @torch.no_grad()
    def update(self, prediction: torch.Tensor, target: torch.Tensor) -> None:
        _check_same_shape(DEPTH, prediction, target)
        mask = valid_mask(target).expand_as(target)
        if not mask.any():
            return
        p, t = prediction[mask].double(), target[mask].double()
        error = (p - t).abs()
        self._add({"abs_err": error.mean().item(), "rel_err": (error / t).mean().item()})


class NormalErrors(_BatchAverage):
    """Angle between predicted and true normals, in degrees, over pixels with a normal.

    Per batch, as the reference ``normal_error``: the mean angle, the median angle (the mean of the
    two middle values for an even count, as numpy's median) and the percentage of angles strictly
    below 11.25, 22.5 and 30 degrees; then the batch average (so the median is a mean of per-batch
    medians, as in the reference).
    """

    @torch.no_grad()
    def update(self, prediction: torch.Tensor, target: torch.Tensor) -> None:
        _check_same_shape(NORMAL, prediction, target)
        mask = valid_mask(target)[:, 0]
        if not mask.any():
            return
        cosine = (prediction * target).sum(dim=1)[mask].clamp(-1, 1)
        angle = torch.rad2deg(torch.acos(cosine)).double()
        ordered = angle.sort().values
        n = ordered.numel()
        stats = {
            "angle_mean": angle.mean().item(),
            "angle_median": ((ordered[(n - 1) // 2] + ordered[n // 2]) / 2).item(),
        }
        for threshold in _ANGLE_THRESHOLDS:
            stats[f"within_{threshold:g}"] = 100 * (angle < threshold).double().mean().item()
        self._add(stats)


class DenseMetrics:
    """The test metrics of a dense benchmark, accumulated over an epoch.

    ``update(predictions, targets)`` takes the model's prediction dict and the loader's target dict;
    ``compute()`` returns every metric of ``tasks`` (names and directions in :data:`METRICS`), in order.
    """

    def __init__(self, tasks: Sequence[str], num_classes: int):
        self.tasks = check_tasks(tasks)
        self.num_classes = num_classes
        builders = {SEMANTIC: lambda: ConfusionMatrix(num_classes), DEPTH: DepthErrors, NORMAL: NormalErrors}
        self._accumulators = {task: builders[task]() for task in self.tasks}

    @property
    def higher_is_better(self) -> dict[str, bool]:
        return higher_is_better(self.tasks)

    def update(self, predictions: Mapping[str, torch.Tensor], targets: Mapping[str, torch.Tensor]) -> None:
        for task, accumulator in self._accumulators.items():
            if task not in predictions or task not in targets:
                raise KeyError(
                    f"task {task!r} missing: predictions hold {sorted(predictions)}, targets {sorted(targets)}"
                )
            accumulator.update(predictions[task], targets[task])

    def compute(self) -> dict[str, float]:
        return {name: value for acc in self._accumulators.values() for name, value in acc.compute().items()}

    def __repr__(self) -> str:
        return f"DenseMetrics(tasks={self.tasks}, num_classes={self.num_classes})"


# ---------------------------------------------------------------------------------------------
# The benchmark


def reference_protocol(batch_size: int, method_options: Mapping[str, Mapping[str, object]]) -> Protocol:
    """The training protocol both dense benchmarks share (AvivNavon/nash-mtl experiments/nyuv2/trainer.py
    and its CityScapes twin) at a benchmark's batch size, with its methods' default options.

    200 epochs of Adam 1e-4, halved after epoch 100 (``StepLR(step_size=100, gamma=0.5)`` stepped
    once per epoch); augmentation of the training split (see :class:`DenseNpyDataset`); no
    validation split: the reported metrics are the mean of the last 10 epochs' test metrics. The
    reference evaluates with the training batch size, and its per-batch averaged depth and normal
    metrics depend on it (see :class:`DepthErrors`), so evaluation uses it too.
    """
    return Protocol(
        epochs=200,
        batch_size=batch_size,
        eval_batch_size=batch_size,
        optimizer="adam",
        lr=1e-4,
        scheduler="step",
        scheduler_options={"step_size": 100, "gamma": 0.5},
        reporting_rule="last_k_mean:10",
        method_options=method_options,
    )


def make_dense_benchmark(
    name: str,
    dataset: type[DenseNpyDataset],
    data_dir: str | Path | None,
    build_model: Callable[..., nn.Module],
    width: int,
    protocol: Protocol,
    stl_reference: Mapping[str, float],
) -> Benchmark:
    """A dense benchmark over the MTAN layout at ``data_dir``: the training split augmented, the
    test split (the release's ``val/``) plain, and for every seed the protocol's model,
    ``build_model(architecture="mtan", tasks=..., width=width)``.

    The layout is checked here, so that a missing or malformed folder fails before any training.
    """
    if data_dir is None:
        raise ValueError(
            f"the {name} benchmark needs data_dir (--data-dir DIR): the folder holding train/ and val/ "
            f"of the MTAN release (see go4align.benchmarks.{name})"
        )
    _check_positive_int("width", width)
    splits = {"train": dataset(data_dir, "train", augment=True), "test": dataset(data_dir, "test")}
    tasks = tuple(dataset.folders)
    return Benchmark(
        name=name,
        tasks=[Task(task, *(Metric(m, up) for m, up in METRICS[task].items())) for task in tasks],
        datasets=splits.__getitem__,
        model=lambda seed: build_model(architecture="mtan", tasks=tasks, width=width),
        losses=lambda predictions, targets: task_losses(predictions, targets, tasks),
        metrics=lambda: DenseMetrics(tasks, dataset.num_classes),
        protocol=protocol,
        splits=("train", "test"),
        stl_reference=stl_reference,
        # Where the files lie is not part of the benchmark's identity (see fashion); the width is.
        options={"width": width},
    )


def module_functions(
    num_classes: int, default_tasks: Sequence[str]
) -> tuple[Callable[..., nn.Module], Callable[..., torch.Tensor], Callable[..., DenseMetrics]]:
    """``build_model``, ``losses`` and ``metrics`` of a dense benchmark module with
    ``num_classes`` segmentation classes and ``default_tasks``, documented below."""
    from go4align.benchmarks.models import build_segnet

    def build_model(architecture: str = "mtan", tasks: Sequence[str] = default_tasks, width: int = 64) -> nn.Module:
        """SegNet-MTAN (``"mtan"``, the protocol's model) or the plain SegNet (``"split"``; with one
        task it is the single-task model); ``width`` is the first layer's channel count (64 in the
        paper)."""
        return build_segnet(architecture, tasks, num_classes=num_classes, width=width)

    def losses(
        predictions: Mapping[str, torch.Tensor],
        targets: Mapping[str, torch.Tensor],
        tasks: Sequence[str] = default_tasks,
    ) -> torch.Tensor:
        """``(len(tasks),)`` losses in task order (see :func:`go4align.benchmarks.dense.task_losses`):
        segmentation NLL, masked L1 depth, 1 - masked cosine of the normals."""
        return task_losses(predictions, targets, tasks)

    def metrics(tasks: Sequence[str] = default_tasks) -> DenseMetrics:
        """A fresh accumulator of the test metrics (names and directions in ``HIGHER_IS_BETTER``)."""
        return DenseMetrics(tasks, num_classes)

    return build_model, losses, metrics
