"""NYUv2 on fixture files written in the MTAN .npy layout."""

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from go4align.benchmarks import dense, get_benchmark, nyuv2

SIZE = (32, 32)


def write_nyuv2(root, split_folder="train", n=3, size=SIZE, seed=0):
    """``n`` random items under ``root/split_folder`` in the MTAN layout and dtypes (float64 image)."""
    rng = np.random.default_rng(seed)
    arrays = {
        "image": lambda: rng.random((*size, 3)),
        "label": lambda: rng.integers(-1, nyuv2.NUM_CLASSES, size).astype(np.float32),
        "depth": lambda: (rng.random((*size, 1)) * 3 * (rng.random((*size, 1)) > 0.2)).astype(np.float32),
        "normal": lambda: (lambda v: v / np.linalg.norm(v, axis=-1, keepdims=True))(rng.normal(size=(*size, 3))),
    }
    for folder, make in arrays.items():
        (root / split_folder / folder).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            np.save(root / split_folder / folder / f"{i}.npy", make())
    return root


def test_loads_items_in_the_documented_format(tmp_path):
    write_nyuv2(tmp_path)
    dataset = nyuv2.NYUv2(tmp_path, "train", image_size=SIZE)
    assert len(dataset) == 3
    image, targets = dataset[1]
    assert image.shape == (3, *SIZE) and image.dtype == torch.float32
    assert targets["semantic"].shape == SIZE and targets["semantic"].dtype == torch.int64
    assert targets["depth"].shape == (1, *SIZE) and targets["normal"].shape == (3, *SIZE)
    stored = np.load(tmp_path / "train" / "image" / "1.npy")
    assert torch.allclose(image, torch.from_numpy(stored).float().permute(2, 0, 1))
    assert torch.equal(targets["semantic"], torch.from_numpy(np.load(tmp_path / "train" / "label" / "1.npy")).long())


def test_real_size_and_test_split_read_from_val(tmp_path):
    write_nyuv2(tmp_path, "train", n=2, size=nyuv2.IMAGE_SIZE)
    write_nyuv2(tmp_path, "val", n=2, size=nyuv2.IMAGE_SIZE, seed=1)
    test = nyuv2.NYUv2(tmp_path, "test")
    image, targets = test[0]
    assert len(test) == 2 and image.shape == (3, 288, 384) and targets["normal"].shape == (3, 288, 384)
    assert torch.equal(targets["depth"][0], torch.from_numpy(np.load(tmp_path / "val" / "depth" / "0.npy"))[..., 0])


def test_augmented_items_are_reproducible_and_well_formed(tmp_path):
    write_nyuv2(tmp_path)
    runs = []
    for seed in (5, 5):
        dataset = nyuv2.NYUv2(tmp_path, augment=True, generator=torch.Generator().manual_seed(seed), image_size=SIZE)
        runs.append([dataset[i] for i in range(3)])
    for (image_a, targets_a), (image_b, targets_b) in zip(*runs):
        assert torch.equal(image_a, image_b) and all(torch.equal(targets_a[t], targets_b[t]) for t in nyuv2.TASKS)
        assert image_a.shape == (3, *SIZE) and targets_a["semantic"].dtype == torch.int64
        assert set(targets_a["semantic"].unique().tolist()) <= set(range(-1, nyuv2.NUM_CLASSES))


def test_an_explicit_generator_is_refused_inside_dataloader_workers(tmp_path, monkeypatch):
    write_nyuv2(tmp_path)
    dataset = nyuv2.NYUv2(tmp_path, augment=True, generator=torch.Generator(), image_size=SIZE)
    monkeypatch.setattr(dense, "get_worker_info", lambda: object())
    with pytest.raises(RuntimeError, match="pass generator=None"):
        dataset[0]


def test_missing_folder_names_the_path(tmp_path):
    write_nyuv2(tmp_path)
    for path in (tmp_path / "train" / "depth").iterdir():
        path.unlink()
    (tmp_path / "train" / "depth").rmdir()
    with pytest.raises(
        FileNotFoundError, match=f"expected NYUv2 .npy layout at {tmp_path}: missing {tmp_path}/train/depth"
    ):
        nyuv2.NYUv2(tmp_path, image_size=SIZE)


def test_missing_root_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"{tmp_path}/absent is not a directory"):
        nyuv2.NYUv2(tmp_path / "absent", image_size=SIZE)


def only_val(root):
    write_nyuv2(root, "val")


def one_normal_less(root):
    write_nyuv2(root)
    (root / "train" / "normal" / "2.npy").unlink()


def misnamed_label(root):
    write_nyuv2(root)
    (root / "train" / "label" / "2.npy").rename(root / "train" / "label" / "x.npy")


def empty_image_folder(root):
    (root / "train" / "image").mkdir(parents=True)


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        (only_val, "missing .*/train$"),
        (one_normal_less, "normal holds 2 files, .*image holds 3"),
        (misnamed_label, r"must hold files 0.npy..2.npy, found e.g. \['0', '1', 'x'\]"),
        (empty_image_folder, "image holds no .npy files"),
    ],
)
def test_malformed_layouts_raise_clear_errors(tmp_path, breakage, message):
    breakage(tmp_path)
    with pytest.raises(FileNotFoundError, match=f"expected NYUv2 .npy layout at {tmp_path}: .*{message}"):
        nyuv2.NYUv2(tmp_path, image_size=SIZE)


def test_wrong_array_shape_or_label_names_the_file(tmp_path):
    write_nyuv2(tmp_path)
    dataset = nyuv2.NYUv2(tmp_path, image_size=SIZE)
    np.save(tmp_path / "train" / "image" / "0.npy", np.zeros((3, *SIZE)))
    with pytest.raises(ValueError, match=r"train/image/0.npy has shape \(3, 32, 32\), expected \(32, 32, 3\)"):
        dataset[0]
    np.save(tmp_path / "train" / "label" / "1.npy", np.full(SIZE, 13.0))
    with pytest.raises(ValueError, match=r"train/label/1.npy holds label 13.0; expected integers in \[-1, 13\)"):
        dataset[1]
    with pytest.raises(ValueError, match=r"expected \(288, 384, 3\)"):
        nyuv2.NYUv2(tmp_path)[2]
    with pytest.raises(ValueError, match="split must be one of .*, got 'val'"):
        nyuv2.NYUv2(tmp_path, "val")
    with pytest.raises(ValueError, match=r"image_size must be \(height, width\) of positive ints, got \(0, 32\)"):
        nyuv2.NYUv2(tmp_path, image_size=(0, 32))
    with pytest.raises(ValueError, match="image_size must be .*, got 32"):
        nyuv2.NYUv2(tmp_path, image_size=32)
    with pytest.raises(IndexError, match="index 3 out of range"):
        dataset[3]


def test_one_training_step_and_metrics_on_a_tiny_model(tmp_path):
    write_nyuv2(tmp_path, size=(32, 64))
    loader = DataLoader(nyuv2.NYUv2(tmp_path, image_size=(32, 64)), batch_size=3)
    images, targets = next(iter(loader))
    torch.manual_seed(0)
    model = nyuv2.build_model("mtan", width=2)
    losses = nyuv2.losses(model(images), targets)
    assert losses.shape == (3,) and torch.isfinite(losses).all()
    losses.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())

    metrics = nyuv2.metrics()
    with torch.no_grad():
        metrics.update(model(images), targets)
    result = metrics.compute()
    assert list(result) == list(nyuv2.HIGHER_IS_BETTER) == list(nyuv2.STL_REFERENCE)
    assert all(np.isfinite(v) for v in result.values())


def test_protocol_is_the_papers():
    protocol = nyuv2.PROTOCOL
    assert (protocol.epochs, protocol.batch_size, protocol.eval_batch_size, protocol.lr) == (200, 2, 2, 1e-4)
    assert protocol.scheduler == "step" and dict(protocol.scheduler_options) == {"step_size": 100, "gamma": 0.5}
    assert protocol.reporting_rule == "last_k_mean:10" and protocol.method_options["go4align"]["num_groups"] == 2
    assert nyuv2.HIGHER_IS_BETTER["miou"] and not nyuv2.HIGHER_IS_BETTER["angle_median"]
    assert "nash-mtl" in nyuv2.STL_REFERENCE_SOURCE


def write_release(root, n=2):
    """``n`` items of the release's size in each of train/ and val/."""
    write_nyuv2(root, "train", n=n, size=nyuv2.IMAGE_SIZE)
    write_nyuv2(root, "val", n=n, size=nyuv2.IMAGE_SIZE, seed=1)
    return root


def test_benchmark_trains_an_epoch_through_the_harness(tmp_path, train_one_epoch):
    benchmark = get_benchmark("nyuv2", data_dir=write_release(tmp_path / "data"), width=2)
    assert benchmark.splits == ("train", "test") and benchmark.protocol == nyuv2.PROTOCOL
    assert benchmark.stl_reference == nyuv2.STL_REFERENCE and benchmark.options == {"width": 2}
    assert benchmark.dataset("train").augment and not benchmark.dataset("test").augment
    train_one_epoch(benchmark, nyuv2.HIGHER_IS_BETTER)


def test_benchmark_needs_a_well_formed_data_dir(tmp_path):
    with pytest.raises(ValueError, match=r"nyuv2 benchmark needs data_dir \(--data-dir DIR\)"):
        get_benchmark("nyuv2")
    with pytest.raises(FileNotFoundError, match=f"expected NYUv2 .npy layout at {tmp_path}: missing .*/val"):
        get_benchmark("nyuv2", data_dir=write_nyuv2(tmp_path), width=2)
    with pytest.raises(ValueError, match="width must be a positive int, got 0"):
        get_benchmark("nyuv2", data_dir=write_release(tmp_path / "data"), width=0)
