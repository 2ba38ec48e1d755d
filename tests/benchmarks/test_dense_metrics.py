"""Dense losses, metrics and augmentation against hand computations on tiny tensors."""

import math

import pytest
import torch

from go4align.benchmarks import dense


def one_hot_scores(classes: list[list[int]], num_classes: int) -> torch.Tensor:
    """(1, C, H, W) scores whose argmax is ``classes``."""
    return torch.nn.functional.one_hot(torch.tensor([classes]), num_classes).permute(0, 3, 1, 2).float()


# ---------------------------------------------------------------------------------------------
# Segmentation: confusion matrix

LABELS = torch.tensor([[[0, 0, 1, -1], [2, 2, 1, 1]]])
PREDICTED = [[0, 1, 1, 2], [2, 0, 1, 1]]
# Rows = label, columns = prediction, over the 7 labelled pixels: [[1, 1, 0], [0, 3, 0], [1, 0, 1]].
# IoU = 1 / (2 + 2 - 1), 3 / (3 + 4 - 3), 1 / (2 + 1 - 1); accuracy = 5 / 7.
MIOU = 100 * (1 / 3 + 3 / 4 + 1 / 2) / 3
PIX_ACC = 100 * 5 / 7


def test_confusion_matrix_matches_hand_computation():
    matrix = dense.ConfusionMatrix(3)
    matrix.update(one_hot_scores(PREDICTED, 3), LABELS)
    assert matrix.matrix.tolist() == [[1, 1, 0], [0, 3, 0], [1, 0, 1]]
    result = matrix.compute()
    assert result["miou"] == pytest.approx(MIOU)
    assert result["pix_acc"] == pytest.approx(PIX_ACC)


def test_confusion_matrix_accumulates_pixels_over_batches():
    matrix = dense.ConfusionMatrix(3)
    matrix.update(one_hot_scores([PREDICTED[0]], 3), LABELS[:, :1])
    matrix.update(one_hot_scores([PREDICTED[1]], 3), LABELS[:, 1:])
    assert matrix.compute() == pytest.approx({"miou": MIOU, "pix_acc": PIX_ACC})


def test_class_absent_from_labels_and_predictions_is_left_out_of_miou():
    matrix = dense.ConfusionMatrix(4)
    matrix.update(one_hot_scores(PREDICTED, 4), LABELS)
    assert matrix.compute() == pytest.approx({"miou": MIOU, "pix_acc": PIX_ACC})


def test_confusion_matrix_rejects_bad_input():
    matrix = dense.ConfusionMatrix(3)
    with pytest.raises(ValueError, match="no labelled pixel"):
        matrix.compute()
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        matrix.update(one_hot_scores(PREDICTED, 4), LABELS)
    with pytest.raises(ValueError, match="num_classes must be >= 2, got 1"):
        dense.ConfusionMatrix(1)


# ---------------------------------------------------------------------------------------------
# Depth

DEPTH_PRED = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
DEPTH_TRUE = torch.tensor([[[[2.0, 0.0], [1.0, 4.0]]]])  # 0 = no measurement


def test_depth_errors_average_per_batch_as_the_reference():
    errors = dense.DepthErrors()
    errors.update(DEPTH_PRED, DEPTH_TRUE)  # |1-2|, |3-1|, |4-4| -> abs 1, rel (1/2 + 2 + 0) / 3
    errors.update(torch.zeros(1, 1, 2, 2), torch.tensor([[[[0.0, 0.0], [0.0, 2.0]]]]))  # abs 2, rel 1
    errors.update(torch.ones(1, 1, 2, 2), torch.zeros(1, 1, 2, 2))  # no measurement: skipped
    result = errors.compute()
    # Batch average, not pixel average ((1 + 2 + 0 + 2) / 4 = 1.25).
    assert result["abs_err"] == pytest.approx((1 + 2) / 2)
    assert result["rel_err"] == pytest.approx(((0.5 + 2) / 3 + 1) / 2)


def test_depth_loss_is_masked_l1():
    assert dense.depth_loss(DEPTH_PRED, DEPTH_TRUE).item() == pytest.approx((1 + 2 + 0) / 3)
    # No valid pixel: 0, not NaN.
    assert dense.depth_loss(DEPTH_PRED, torch.zeros_like(DEPTH_TRUE)).item() == 0


def test_depth_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match=r"depth: prediction shape \(1, 1, 2, 2\) and target shape \(1, 2, 2\)"):
        dense.depth_loss(DEPTH_PRED, DEPTH_TRUE[0])
    with pytest.raises(ValueError, match="call update"):
        dense.DepthErrors().compute()


# ---------------------------------------------------------------------------------------------
# Normals


def normals_at_angles(degrees: list[float], invalid: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(1, 3, 1, n) predictions at ``degrees`` from the target (1, 0, 0), plus ``invalid`` pixels
    with an all-zero target."""
    radians = torch.deg2rad(torch.tensor(degrees + [0.0] * invalid, dtype=torch.float64))
    prediction = torch.stack([radians.cos(), radians.sin(), torch.zeros_like(radians)])
    target = torch.zeros_like(prediction)
    target[0, : len(degrees)] = 1
    return prediction[None, :, None].float(), target[None, :, None].float()


def test_normal_errors_match_hand_computation():
    errors = dense.NormalErrors()
    errors.update(*normals_at_angles([0, 10, 20, 45], invalid=2))
    errors.update(*normals_at_angles([31, 60, 90]))
    first = {"angle_mean": 18.75, "angle_median": 15.0, "within_11.25": 50.0, "within_22.5": 75.0, "within_30": 75.0}
    second = {"angle_mean": 181 / 3, "angle_median": 60.0, "within_11.25": 0.0, "within_22.5": 0.0, "within_30": 0.0}
    expected = {name: (first[name] + second[name]) / 2 for name in first}
    assert errors.compute() == pytest.approx(expected, abs=1e-3)


def test_normal_loss_is_one_minus_masked_cosine():
    prediction, target = normals_at_angles([0, 60], invalid=1)
    assert dense.normal_loss(prediction, target).item() == pytest.approx(1 - (1 + 0.5) / 2, abs=1e-6)


def test_semantic_loss_ignores_unlabelled_pixels():
    probabilities = torch.tensor([[0.5, 0.25, 0.25], [0.1, 0.6, 0.3], [0.2, 0.2, 0.6]])
    log_probs = probabilities.log().T.reshape(1, 3, 1, 3)
    labels = torch.tensor([[[0, 1, -1]]])
    expected = -(math.log(0.5) + math.log(0.6)) / 2
    assert dense.semantic_loss(log_probs, labels).item() == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="labels"):
        dense.semantic_loss(log_probs, labels[0])


def test_task_losses_in_task_order_and_missing_task():
    prediction, target = normals_at_angles([0, 60])
    predictions = {"depth": DEPTH_PRED, "normal": prediction}
    targets = {"depth": DEPTH_TRUE, "normal": target}
    losses = dense.task_losses(predictions, targets, ("normal", "depth"))
    assert losses.tolist() == pytest.approx([0.25, 1.0], abs=1e-6)
    with pytest.raises(KeyError, match="predictions lack task 'semantic'"):
        dense.task_losses(predictions, targets, ("semantic",))


def test_dense_metrics_combine_tasks_in_order():
    metrics = dense.DenseMetrics(("depth", "semantic"), num_classes=3)
    metrics.update(
        {"depth": DEPTH_PRED, "semantic": one_hot_scores(PREDICTED, 3)}, {"depth": DEPTH_TRUE, "semantic": LABELS}
    )
    result = metrics.compute()
    assert list(result) == list(metrics.higher_is_better) == ["abs_err", "rel_err", "miou", "pix_acc"]
    assert metrics.higher_is_better == {"abs_err": False, "rel_err": False, "miou": True, "pix_acc": True}
    assert result["miou"] == pytest.approx(MIOU)
    with pytest.raises(KeyError, match="task 'semantic' missing"):
        metrics.update({"depth": DEPTH_PRED}, {"depth": DEPTH_TRUE})


@pytest.mark.parametrize(
    ("tasks", "message"),
    [
        ((), "at least one task"),
        (("depth", "edges"), r"unknown dense task\(s\) \['edges'\]"),
        (("depth", "depth"), "distinct"),
    ],
)
def test_check_tasks_rejects_bad_task_lists(tasks, message):
    with pytest.raises(ValueError, match=message):
        dense.check_tasks(tasks)


# ---------------------------------------------------------------------------------------------
# Augmentation


def sample(height: int = 8, width: int = 12) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(3, height, width, generator=generator)
    labels = (torch.arange(height * width).reshape(height, width) % 4 - 1).float()  # -1, 0, 1, 2 interleaved
    depth = torch.rand(1, height, width, generator=generator) + 0.5
    normal = torch.nn.functional.normalize(torch.randn(3, height, width, generator=generator), dim=0)
    return image, {"semantic": labels, "depth": depth, "normal": normal}


def test_scale_crop_keeps_shapes_and_is_identity_at_scale_one():
    image, targets = sample()
    out_image, out = dense.random_scale_crop(image, targets, scales=(1.0,))
    assert torch.allclose(out_image, image, atol=1e-6)
    for task in targets:
        assert out[task].shape == targets[task].shape
        assert torch.allclose(out[task], targets[task], atol=1e-6)


def test_scale_crop_zooms_a_window_with_nearest_labels_and_scaled_depth():
    image, targets = sample(8, 12)
    _, out = dense.random_scale_crop(image, targets, scales=(2.0,), generator=torch.Generator().manual_seed(3))
    # Nearest upsampling by 2 repeats each window pixel 2x2; depth shrinks by the scale.
    window = out["depth"][:, ::2, ::2] * 2
    assert torch.allclose(out["depth"] * 2, window.repeat_interleave(2, 1).repeat_interleave(2, 2))
    matches = [
        (top, left)
        for top in range(8 - 4 + 1)
        for left in range(12 - 6 + 1)
        if torch.allclose(window, targets["depth"][:, top : top + 4, left : left + 6])
        and torch.equal(out["semantic"][::2, ::2], targets["semantic"][top : top + 4, left : left + 6])
    ]
    assert matches, "the output is not an upsampled window of the input"
    assert out["semantic"].dtype == targets["semantic"].dtype


def test_scale_crop_is_reproducible_with_a_generator():
    image, targets = sample()
    runs = [
        dense.random_scale_crop(image, targets, generator=torch.Generator().manual_seed(seed))[1]["depth"]
        for seed in (7, 7, 8, 9, 10)
    ]
    assert torch.equal(runs[0], runs[1])
    assert any(not torch.equal(runs[0], other) for other in runs[2:])


def test_scale_crop_rejects_bad_scales():
    image, targets = sample()
    with pytest.raises(ValueError, match=r"scales must be .* >= 1, got \(0.5,\)"):
        dense.random_scale_crop(image, targets, scales=(0.5,))


def test_horizontal_flip_mirrors_everything_and_negates_normal_x():
    image, targets = sample()
    outcomes = set()
    for seed in range(20):
        out_image, out = dense.random_horizontal_flip(image, targets, generator=torch.Generator().manual_seed(seed))
        flipped = not torch.equal(out_image, image)
        outcomes.add(flipped)
        if flipped:
            assert torch.equal(out_image, image.flip(-1))
            assert torch.equal(out["semantic"], targets["semantic"].flip(-1))
            assert torch.equal(out["depth"], targets["depth"].flip(-1))
            assert torch.equal(out["normal"][0], -targets["normal"][0].flip(-1))
            assert torch.equal(out["normal"][1:], targets["normal"][1:].flip(-1))
        else:
            assert all(torch.equal(out[task], targets[task]) for task in targets)
    assert outcomes == {True, False}
