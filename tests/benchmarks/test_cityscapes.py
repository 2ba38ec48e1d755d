"""CityScapes on fixture files written in the MTAN .npy layout (7-class labels in label_7)."""

import numpy as np
import pytest
import torch

from go4align.benchmarks import cityscapes, get_benchmark

SIZE = (32, 64)


def write_cityscapes(root, split_folder="train", n=2, size=SIZE, label_folder="label_7"):
    rng = np.random.default_rng(0)
    arrays = {
        "image": lambda: rng.random((*size, 3)).astype(np.float32),
        label_folder: lambda: rng.integers(-1, cityscapes.NUM_CLASSES, size).astype(np.float32),
        "depth": lambda: (rng.random((*size, 1)) * (rng.random((*size, 1)) > 0.3)).astype(np.float32),
    }
    for folder, make in arrays.items():
        (root / split_folder / folder).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            np.save(root / split_folder / folder / f"{i}.npy", make())


def test_real_size_items_from_both_splits(tmp_path):
    for split_folder in ("train", "val"):
        write_cityscapes(tmp_path, split_folder, size=cityscapes.IMAGE_SIZE)
    for split in ("train", "test"):
        dataset = cityscapes.CityScapes(tmp_path, split, augment=split == "train", generator=torch.Generator())
        image, targets = dataset[1]
        assert len(dataset) == 2 and image.shape == (3, 128, 256)
        assert set(targets) == {"semantic", "depth"}
        assert targets["semantic"].shape == (128, 256) and targets["depth"].shape == (1, 128, 256)


def test_reads_the_7_class_labels(tmp_path):
    write_cityscapes(tmp_path, label_folder="label_19")
    with pytest.raises(
        FileNotFoundError, match=f"expected CityScapes .npy layout at {tmp_path}: missing .*train/label_7"
    ):
        cityscapes.CityScapes(tmp_path, image_size=SIZE)


def test_labels_beyond_7_classes_are_refused(tmp_path):
    write_cityscapes(tmp_path)
    np.save(tmp_path / "train" / "label_7" / "0.npy", np.full(SIZE, 7.0, dtype=np.float32))
    with pytest.raises(ValueError, match=r"label_7/0.npy holds label 7.0; expected integers in \[-1, 7\)"):
        cityscapes.CityScapes(tmp_path, image_size=SIZE)[0]


def test_one_training_step_and_metrics_on_a_tiny_model(tmp_path):
    write_cityscapes(tmp_path)
    items = [cityscapes.CityScapes(tmp_path, image_size=SIZE)[i] for i in range(2)]
    images = torch.stack([image for image, _ in items])
    targets = {task: torch.stack([t[task] for _, t in items]) for task in cityscapes.TASKS}
    torch.manual_seed(0)
    model = cityscapes.build_model("mtan", width=2)
    predictions, representation = model(images, return_representation=True)
    assert predictions["semantic"].shape == (2, 7, *SIZE) and representation.shape == (2, 2, *SIZE)
    losses = cityscapes.losses(predictions, targets)
    assert losses.shape == (2,)
    losses.sum().backward()
    assert all(p.grad is not None for p in model.parameters())

    metrics = cityscapes.metrics()
    with torch.no_grad():
        metrics.update(model(images), targets)
    assert list(metrics.compute()) == list(cityscapes.HIGHER_IS_BETTER) == list(cityscapes.STL_REFERENCE)


def test_protocol_and_references():
    protocol = cityscapes.PROTOCOL
    assert (protocol.epochs, protocol.batch_size, protocol.eval_batch_size, protocol.lr) == (200, 8, 8, 1e-4)
    assert protocol.scheduler == "step" and dict(protocol.scheduler_options) == {"step_size": 100, "gamma": 0.5}
    assert protocol.reporting_rule == "last_k_mean:10"
    assert protocol.method_options == {"go4align": {"num_groups": 2}, "famo": {"gamma": 1e-2}}
    assert cityscapes.STL_REFERENCE == {"miou": 74.01, "pix_acc": 93.16, "abs_err": 0.0125, "rel_err": 27.77}
    assert cityscapes.HIGHER_IS_BETTER == {"miou": True, "pix_acc": True, "abs_err": False, "rel_err": False}
    with pytest.raises(ValueError, match="architecture must be one of .*, got 'segnet'"):
        cityscapes.build_model("segnet")


def test_benchmark_trains_an_epoch_through_the_harness(tmp_path, train_one_epoch):
    for split_folder in ("train", "val"):
        write_cityscapes(tmp_path / "data", split_folder, size=cityscapes.IMAGE_SIZE)
    benchmark = get_benchmark("cityscapes", data_dir=tmp_path / "data", width=2)
    assert benchmark.splits == ("train", "test") and benchmark.protocol == cityscapes.PROTOCOL
    assert benchmark.stl_reference == cityscapes.STL_REFERENCE and benchmark.options == {"width": 2}
    train_one_epoch(benchmark, cityscapes.HIGHER_IS_BETTER)


def test_benchmark_needs_a_well_formed_data_dir(tmp_path):
    with pytest.raises(ValueError, match=r"cityscapes benchmark needs data_dir \(--data-dir DIR\)"):
        get_benchmark("cityscapes", width=2)
    write_cityscapes(tmp_path, "train", label_folder="label_19")
    with pytest.raises(FileNotFoundError, match=f"expected CityScapes .npy layout at {tmp_path}: missing .*label_7"):
        get_benchmark("cityscapes", data_dir=tmp_path)
