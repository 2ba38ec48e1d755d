import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from go4align.benchmarks import check_model, get_benchmark
from go4align.benchmarks.fashion import (
    DEFAULT_DIR,
    INSTALL_HINT,
    LeNetEncoder,
    load_fashion_mnist,
    overlay_pairs,
    read_idx,
)
from go4align.train import parse_method_spec, train_run


def write_idx(path: Path, array: np.ndarray, compress: bool) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        data = gzip.compress(data)
    path.write_bytes(data)


def fake_fashion(directory: Path, train: int = 60, test: int = 20, compress: bool = True, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (train, 28, 28)),
        "train-labels-idx1-ubyte": rng.integers(0, 10, train),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (test, 28, 28)),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, test),
    }
    directory.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        write_idx(directory / name, array, compress)
    return arrays


@pytest.mark.parametrize("compress", [True, False])
def test_reads_idx_files_gzipped_or_not(tmp_path, compress):
    arrays = fake_fashion(tmp_path, compress=compress)
    data = load_fashion_mnist(tmp_path)
    assert np.array_equal(data["train"][0], arrays["train-images-idx3-ubyte"])
    assert np.array_equal(data["test"][1], arrays["t10k-labels-idx1-ubyte"])
    assert data["train"][1].dtype == np.int64


def test_missing_or_broken_data_say_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install -y dataset-fashion-mnist"):
        load_fashion_mnist(tmp_path / "nowhere")
    fake_fashion(tmp_path)
    (tmp_path / "t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match=r"t10k-images-idx3-ubyte\[.gz\] not found.*--data-dir"):
        load_fashion_mnist(tmp_path)
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x00\x00\x0d\x01\x00\x00\x00\x01abcd")
    with pytest.raises(ValueError, match="not an IDX file of unsigned bytes"):
        read_idx(bad)
    bad.write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 5, 1, 2]))
    with pytest.raises(ValueError, match="holds 2"):
        read_idx(bad)
    with pytest.raises(ValueError, match="takes no option"):
        get_benchmark("fashion", data_dir=str(tmp_path), colour=True)


def test_overlay_layout():
    images = np.zeros((3, 28, 28), dtype=np.uint8)
    for i in range(3):
        images[i] = 10 * (i + 1)
    canvas, targets = overlay_pairs(images, np.array([0, 1, 2]), 36, seed=0)
    partner = targets["bottom_right"].numpy()
    assert sorted(partner.tolist()) == [0, 1, 2]
    for i in range(3):
        item, other = 10 * (i + 1), 10 * (partner[i] + 1)
        assert canvas[i, 0, 0] == item and canvas[i, 35, 35] == other
        assert canvas[i, 0, 35] == 0 and canvas[i, 35, 0] == 0
        assert canvas[i, 20, 20] == max(item, other)  # the overlap: brighter pixel wins
    assert targets["top_left"].tolist() == [0, 1, 2]


def test_benchmark_on_written_files_trains(tmp_path):
    fake_fashion(tmp_path / "data")
    bench = get_benchmark("fashion", data_dir=str(tmp_path / "data"), val_size=6, test_size=10)
    assert [len(bench.dataset(s)) for s in ("train", "val", "test")] == [54, 6, 10]
    x, y = bench.dataset("train").get_batch(torch.arange(4))
    assert x.shape == (4, 1, 36, 36) and x.dtype == torch.float32 and float(x.max()) <= 1
    check_model(bench.build_model(0))
    assert isinstance(bench.build_model(0).encoder, LeNetEncoder)
    result = train_run(
        bench.with_protocol(epochs=1, batch_size=16), parse_method_spec("go4align"), 0, tmp_path / "run", progress=False
    )
    assert result["complete"] and set(result["metrics"]) == {"top_left_acc", "bottom_right_acc"}
    with pytest.raises(ValueError, match="test_size must be an int in"):
        get_benchmark("fashion", data_dir=str(tmp_path / "data"), test_size=21)


@pytest.mark.skipif(not DEFAULT_DIR.is_dir(), reason=f"Fashion-MNIST is not installed: {INSTALL_HINT}")
def test_real_fashion_mnist():
    data = load_fashion_mnist()
    assert data["train"][0].shape == (60000, 28, 28) and data["test"][0].shape == (10000, 28, 28)
    assert np.bincount(data["test"][1]).tolist() == [1000] * 10
    bench = get_benchmark("fashion", train_size=512, val_size=256, test_size=256)
    assert [len(bench.dataset(s)) for s in ("train", "val", "test")] == [512, 256, 256]
