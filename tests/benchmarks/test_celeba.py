"""CelebA on fixture files written in both release layouts, the BCE losses, F1 and the CNN."""

import math
import pickle
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from go4align.benchmarks import celeba, get_benchmark
from go4align.benchmarks.models import CelebACNN

PARTITION = [0, 0, 0, 1, 2, 2]  # train / val / test of the fixture images
FLAT = ("img_align_celeba", "list_attr_celeba.txt", "list_eval_partition.txt")
OFFICIAL = ("Img/img_align_celeba", "Anno/list_attr_celeba.txt", "Eval/list_eval_partition.txt")


def write_celeba(root, layout=FLAT, partition=PARTITION, seed=0):
    """Aligned-size (178x218) jpg faces with random attributes; returns the -1/1 value table."""
    rng = np.random.default_rng(seed)
    image_dir, attribute_file, partition_file = (root / part for part in layout)
    image_dir.mkdir(parents=True)
    attribute_file.parent.mkdir(parents=True, exist_ok=True)
    partition_file.parent.mkdir(parents=True, exist_ok=True)
    values = rng.choice([-1, 1], size=(len(partition), 40))
    names = [f"{i + 1:06d}.jpg" for i in range(len(partition))]
    for name in names:
        Image.fromarray(rng.integers(0, 256, (218, 178, 3), dtype=np.uint8)).save(image_dir / name)
    rows = [f"{name} " + " ".join(f"{v:2d}" for v in row) for name, row in zip(names, values)]
    attribute_file.write_text("\n".join([str(len(names)), " ".join(celeba.ATTRIBUTES), *rows]) + "\n")
    partition_file.write_text("".join(f"{name} {p}\n" for name, p in zip(names, partition)))
    return values


@pytest.mark.parametrize("layout", [FLAT, OFFICIAL])
def test_splits_labels_and_images(tmp_path, layout):
    values = write_celeba(tmp_path, layout)
    sizes = {split: len(celeba.CelebA(tmp_path, split)) for split in celeba.SPLITS}
    assert sizes == {"train": 3, "val": 1, "test": 2}
    test = celeba.CelebA(tmp_path, "test")
    image, targets = test[1]  # the sixth image
    assert image.shape == (3, 64, 64) and image.dtype == torch.float32
    assert 0 <= image.min() and image.max() <= 1
    assert list(targets) == list(celeba.ATTRIBUTES)
    assert [targets[a].item() for a in celeba.ATTRIBUTES] == [float(v == 1) for v in values[5]]
    # The reference's Resize((64, 64)) + ToTensor() on a PIL image: PIL bilinear, then / 255.
    expected = Image.open(tmp_path / layout[0] / "000006.jpg").convert("RGB").resize((64, 64), Image.BILINEAR)
    assert torch.equal(image, torch.from_numpy(np.asarray(expected).copy()).permute(2, 0, 1).float() / 255)


def test_image_size_is_a_parameter(tmp_path):
    write_celeba(tmp_path)
    assert celeba.CelebA(tmp_path, image_size=16)[0][0].shape == (3, 16, 16)
    with pytest.raises(ValueError, match="image_size must be a positive int, got 0"):
        celeba.CelebA(tmp_path, image_size=0)
    with pytest.raises(ValueError, match="split must be one of .*, got 'valid'"):
        celeba.CelebA(tmp_path, "valid")


def test_missing_layout_names_what_was_expected(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"expected CelebA layout at {tmp_path}: .*list_attr_celeba.txt"):
        celeba.CelebA(tmp_path)


def test_missing_image_is_named(tmp_path):
    write_celeba(tmp_path)
    (tmp_path / "img_align_celeba" / "000002.jpg").unlink()
    dataset = celeba.CelebA(tmp_path)
    with pytest.raises(FileNotFoundError, match="expected CelebA image .*img_align_celeba/000002.jpg"):
        dataset[1]


def rewrite_line(path, number, change):
    lines = path.read_text().splitlines()
    lines[number - 1] = change(lines[number - 1])
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize(
    ("file", "number", "change", "message"),
    [
        (FLAT[1], 2, lambda line: line.replace("Smiling", "Smile"), "line 2 must list the 40 CelebA attributes"),
        (FLAT[1], 1, lambda line: "7", "line 1 announces 7 images, found 6 rows"),
        (FLAT[1], 1, lambda line: "six", "expected an image count on line 1"),
        (
            FLAT[1],
            5,
            lambda line: line[:-2] + " 0",
            r"line 5: expected a file name and 40 values of -1 or 1, got '000003.jpg",
        ),
        (FLAT[1], 6, lambda line: line + " 1", "line 6: expected a file name and 40 values"),
        (FLAT[1], 7, lambda line: line.replace("-1", "é", 1), "line 7: expected a file name and 40 values"),
        (FLAT[2], 2, lambda line: "000002.jpg 3", r"line 2: expected '<file name> <0, 1 or 2>', got '000002.jpg 3'"),
        (FLAT[2], 3, lambda line: "000099.jpg 0", r"assigns no split to 1 image\(s\) of .*, e.g. \['000003.jpg'\]"),
    ],
)
def test_malformed_annotation_files_raise_clear_errors(tmp_path, file, number, change, message):
    write_celeba(tmp_path)
    rewrite_line(tmp_path / file, number, change)
    with pytest.raises(ValueError, match=message):
        celeba.CelebA(tmp_path)


def test_losses_are_per_attribute_binary_cross_entropy():
    tasks = celeba.ATTRIBUTES[:2]
    predictions = {tasks[0]: torch.tensor([0.9, 0.2]), tasks[1]: torch.tensor([0.5, 0.75])}
    targets = {tasks[0]: torch.tensor([1.0, 0.0]), tasks[1]: torch.tensor([0.0, 1.0])}
    expected = [-(math.log(0.9) + math.log(0.8)) / 2, -(math.log(0.5) + math.log(0.75)) / 2]
    assert celeba.losses(predictions, targets, tasks).tolist() == pytest.approx(expected, rel=1e-6)
    with pytest.raises(KeyError, match="predictions lack task '5_o_Clock_Shadow'"):
        celeba.losses({}, targets)
    with pytest.raises(ValueError, match=r"each prediction and target must be \(B,\), got stacked \(2, 2, 1\)"):
        celeba.losses(
            {t: p[:, None] for t, p in predictions.items()}, {t: y[:, None] for t, y in targets.items()}, tasks
        )


def test_f1_matches_hand_computation_with_a_zero_denominator():
    tasks = ("a", "b", "c")
    f1 = celeba.F1Scores(tasks)
    # a: TP 2, FP 1, FN 1 -> 4 / 6. b: no positive prediction or label -> 0. c: TP 0, FN 2 -> 0.
    f1.update(
        {
            "a": torch.tensor([0.9, 0.6, 0.7, 0.1]),
            "b": torch.tensor([0.1, 0.5, 0.2, 0.0]),
            "c": torch.tensor([0.4, 0.3, 0.2, 0.1]),
        },
        {"a": torch.tensor([1.0, 1.0, 0.0, 1.0]), "b": torch.zeros(4), "c": torch.tensor([1.0, 1.0, 0.0, 0.0])},
    )
    f1.update(
        {"a": torch.tensor([0.8]), "b": torch.tensor([0.3]), "c": torch.tensor([0.2])},
        {t: torch.zeros(1) for t in tasks},
    )
    # a gains one false positive in the second batch: TP 2, FP 2, FN 1 -> 4 / 7.
    assert f1.compute() == pytest.approx({"f1_a": 100 * 4 / 7, "f1_b": 0.0, "f1_c": 0.0})
    assert f1.higher_is_better == {"f1_a": True, "f1_b": True, "f1_c": True}
    with pytest.raises(ValueError, match="call update"):
        celeba.F1Scores(tasks).compute()
    with pytest.raises(ValueError, match=r"distinct names, got \(\)"):
        celeba.F1Scores(())


def test_one_training_step_of_the_tiny_cnn(tmp_path):
    write_celeba(tmp_path)
    dataset = celeba.CelebA(tmp_path, image_size=16)
    batch = [dataset[i] for i in range(3)]
    images = torch.stack([image for image, _ in batch])
    targets = {a: torch.stack([t[a] for _, t in batch]) for a in celeba.ATTRIBUTES}
    torch.manual_seed(0)
    model = celeba.build_model(width=2)
    predictions, representation = model(images, return_representation=True)
    assert representation.shape == (3, 16) and all(p.shape == (3,) for p in predictions.values())
    losses = celeba.losses(predictions, targets)
    assert losses.shape == (40,) and torch.isfinite(losses).all()
    losses.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    metrics = celeba.metrics()
    metrics.update(predictions, targets)
    assert list(metrics.compute()) == list(celeba.HIGHER_IS_BETTER)


def test_cnn_parameter_split_and_bad_arguments():
    model = CelebACNN(celeba.ATTRIBUTES, width=2)
    shared = {id(p) for p in model.shared_parameters()}
    task = {id(p) for p in model.task_parameters()}
    assert shared.isdisjoint(task) and shared | task == {id(p) for p in model.parameters()}
    assert len(model.task_parameters()) == 80
    # FAMO's Network at width 64, counted by hand: 4,650,304 conv + BN, 2 x (262,144 + 1,024) linear + BN;
    # 40 heads of 512 weights + 1 bias.
    full = CelebACNN(celeba.ATTRIBUTES)
    assert sum(p.numel() for p in full.shared_parameters()) == 5_176_640
    assert sum(p.numel() for p in full.task_parameters()) == 40 * 513
    with pytest.raises(ValueError, match="unknown CelebA attribute"):
        celeba.build_model(("Smile",))
    with pytest.raises(ValueError, match="distinct names"):
        CelebACNN(("a", "a"))
    with pytest.raises(ValueError, match="width must be a positive int, got -1"):
        CelebACNN(("a",), width=-1)
    with pytest.raises(ValueError, match=r"H, W >= 8 .*got \(1, 3, 4, 4\)"):
        model(torch.zeros(1, 3, 4, 4))


def test_protocol_and_the_stl_slot():
    protocol = celeba.PROTOCOL
    assert (protocol.epochs, protocol.batch_size, protocol.optimizer, protocol.lr) == (15, 256, "adam", 3e-4)
    assert protocol.scheduler == "none" and protocol.method_options == {}
    assert protocol.reporting_rule == "best_validation" and protocol.selection == "mean"
    # the reference trainer's Adam holds only the model's parameters: UW's log-variances stay at 0
    assert protocol.train_weighting_parameters is False
    assert celeba.STL_REFERENCE is None and "STL runs" in celeba.STL_REFERENCE_SOURCE
    assert len(celeba.HIGHER_IS_BETTER) == 40


def test_missing_pillow_names_the_extra(tmp_path, monkeypatch):
    write_celeba(tmp_path)
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(ImportError, match=r"pip install go4align\[vision\]"):
        celeba.CelebA(tmp_path)


def test_dataset_pickles_for_dataloader_workers(tmp_path):
    write_celeba(tmp_path)
    dataset = pickle.loads(pickle.dumps(celeba.CelebA(tmp_path, "val")))
    assert len(dataset) == 1 and dataset[0][0].shape == (3, 64, 64)


@pytest.mark.parametrize("layout", [FLAT, OFFICIAL])
def test_benchmark_trains_an_epoch_through_the_harness(tmp_path, train_one_epoch, layout):
    write_celeba(tmp_path / "data", layout)
    benchmark = get_benchmark("celeba", data_dir=tmp_path / "data", width=2)
    assert {split: len(benchmark.dataset(split)) for split in benchmark.splits} == {"train": 3, "val": 1, "test": 2}
    assert benchmark.protocol == celeba.PROTOCOL and benchmark.stl_reference is None
    assert benchmark.task_names == list(celeba.ATTRIBUTES) and benchmark.options == {"width": 2}
    result = train_one_epoch(benchmark, celeba.HIGHER_IS_BETTER)
    assert result["selected_epoch"] == 1 and result["stl_reference"] is None


def test_benchmark_needs_a_well_formed_data_dir(tmp_path):
    with pytest.raises(ValueError, match=r"celeba benchmark needs data_dir \(--data-dir DIR\)"):
        get_benchmark("celeba", width=2)
    with pytest.raises(FileNotFoundError, match=f"expected CelebA layout at {tmp_path}"):
        get_benchmark("celeba", data_dir=tmp_path)
    write_celeba(tmp_path)
    with pytest.raises(ValueError, match="width must be a positive int, got 2.5"):
        get_benchmark("celeba", data_dir=tmp_path, width=2.5)
