import numpy as np
import pytest
import torch

from go4align.benchmarks import check_model, get_benchmark
from go4align.benchmarks.digits import PROTOCOL, load_digits_images
from go4align.train import parse_method_spec, train_run


@pytest.fixture(scope="module")
def digits():
    return get_benchmark("digits")


def test_images_and_splits(digits):
    images, labels = load_digits_images()
    assert images.shape == (1797, 8, 8) and images.dtype == np.uint8 and images.max() == 255
    sizes = [len(digits.dataset(s)) for s in ("train", "val", "test")]
    assert sizes == [1000, 300, 497]
    x, y = digits.dataset("test").get_batch(torch.arange(10))
    assert x.shape == (10, 1, 12, 12) and set(y) == {"top_left", "bottom_right"}
    assert digits.protocol == PROTOCOL and digits.directions == {"top_left_acc": "higher", "bottom_right_acc": "higher"}


def test_canvas_holds_both_digits(digits):
    images, labels = load_digits_images()
    canvas = digits.dataset("train").inputs
    # every top-left 8x8 corner outside the overlap equals some original digit's pixels there
    corners = {img[:4, :4].tobytes() for img in images}
    assert all(c[:4, :4].numpy().tobytes() in corners for c in canvas[:50])
    other = get_benchmark("digits", data_seed=1).dataset("train").inputs
    assert not torch.equal(canvas, other)


def test_learns_in_a_few_epochs(digits, tmp_path):
    model = digits.build_model(0)
    check_model(model)
    result = train_run(digits.with_protocol(epochs=4, lr=1e-2), parse_method_spec("ls"), 0, tmp_path, progress=False)
    first, best = result["epochs"][0]["test"], result["metrics"]
    assert best["top_left_acc"] > 0.3 and best["top_left_acc"] > first["top_left_acc"]
    assert result["selected_epoch"] in range(1, 5)
