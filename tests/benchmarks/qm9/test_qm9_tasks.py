import math

import pytest
import torch

from go4align.benchmarks.qm9.tasks import (
    METRIC_HIGHER_IS_BETTER,
    METRIC_NAMES,
    REPORT_SCALE,
    REPORT_UNITS,
    STL_REFERENCE,
    STL_REFERENCE_SOURCE,
    TASK_NAMES,
    QM9Metrics,
    TargetStats,
    losses,
)


def _stats(std=None):
    std = torch.arange(1, 12, dtype=torch.float64) if std is None else std
    return TargetStats(mean=torch.linspace(-5, 5, 11, dtype=torch.float64), std=std)


def test_task_order_and_units_follow_the_paper_table():
    assert TASK_NAMES == ("mu", "alpha", "eps_HOMO", "eps_LUMO", "R2", "ZPVE", "U0", "U", "H", "G", "c_v")
    energies = {"eps_HOMO", "eps_LUMO", "ZPVE", "U0", "U", "H", "G"}
    for task in TASK_NAMES:
        assert REPORT_SCALE[task] == (1000.0 if task in energies else 1.0)
        assert (REPORT_UNITS[task] == "meV") == (task in energies)
    assert REPORT_UNITS["c_v"] == "cal/(mol K)"


def test_metrics_are_lower_is_better_and_stl_reference_is_the_published_one():
    assert METRIC_NAMES == tuple(f"{task}_mae" for task in TASK_NAMES)
    assert not any(METRIC_HIGHER_IS_BETTER.values())
    assert list(STL_REFERENCE.values()) == [
        0.0671,
        0.1814,
        60.576,
        53.915,
        0.5027,
        4.539,
        58.838,
        64.244,
        63.852,
        66.223,
        0.07212,
    ]
    assert "Nash-MTL" in STL_REFERENCE_SOURCE


def test_losses_are_per_task_mse_in_task_order():
    predictions = {task: torch.full((4,), float(k)) for k, task in enumerate(TASK_NAMES)}
    targets = {task: torch.zeros(4) for task in TASK_NAMES}
    assert torch.equal(losses(predictions, targets), torch.arange(11, dtype=torch.float32) ** 2)


def test_losses_name_the_missing_task():
    predictions = {task: torch.zeros(2) for task in TASK_NAMES if task != "G"}
    with pytest.raises(KeyError, match="'G'"):
        losses(predictions, {task: torch.zeros(2) for task in TASK_NAMES})


def test_metrics_destandardise_and_report_mev():
    stats = _stats()
    metrics = QM9Metrics(stats)
    # standardised error 0.5 on every molecule: MAE = 0.5 * std (* 1000 for energies)
    targets = {task: torch.zeros(3) for task in TASK_NAMES}
    metrics.update({task: torch.full((3,), 0.5) for task in TASK_NAMES}, targets)
    metrics.update({task: torch.full((2,), -0.5) for task in TASK_NAMES}, {task: torch.zeros(2) for task in TASK_NAMES})
    result = metrics.compute()
    for k, task in enumerate(TASK_NAMES):
        assert result[f"{task}_mae"] == pytest.approx(0.5 * (k + 1) * REPORT_SCALE[task])


def test_metrics_match_mae_of_destandardised_values():
    stats = _stats()
    generator = torch.Generator().manual_seed(0)
    y = torch.randn(50, 11, generator=generator, dtype=torch.float64) * 3
    prediction = y + torch.randn(50, 11, generator=generator, dtype=torch.float64)
    metrics = QM9Metrics(stats)
    for rows in (slice(0, 20), slice(20, 50)):
        metrics.update(
            {t: stats.standardise(prediction)[rows, k] for k, t in enumerate(TASK_NAMES)},
            {t: stats.standardise(y)[rows, k] for k, t in enumerate(TASK_NAMES)},
        )
    expected = (prediction - y).abs().mean(dim=0)
    for k, task in enumerate(TASK_NAMES):
        assert metrics.compute()[f"{task}_mae"] == pytest.approx(expected[k].item() * REPORT_SCALE[task])
    metrics.reset()
    with pytest.raises(RuntimeError, match="before any update"):
        metrics.compute()


def test_target_stats_round_trip_and_validation():
    stats = TargetStats.from_targets(torch.randn(30, 11, dtype=torch.float64))
    y = torch.randn(5, 11, dtype=torch.float64)
    assert torch.allclose(stats.destandardise(stats.standardise(y)), y)
    restored = TargetStats.from_state_dict(stats.state_dict())
    assert torch.equal(restored.mean, stats.mean) and torch.equal(restored.std, stats.std)
    with pytest.raises(ValueError, match=r"shape \(11,\)"):
        TargetStats(mean=torch.zeros(10), std=torch.ones(10))
    with pytest.raises(ValueError, match="positive"):
        _stats(std=torch.zeros(11, dtype=torch.float64))


def test_target_stats_use_the_unbiased_std_like_the_reference():
    y = torch.tensor([[float(v)] * 11 for v in (1, 2, 3, 6)], dtype=torch.float64)
    stats = TargetStats.from_targets(y)
    assert stats.mean[0] == 3.0
    assert stats.std[0] == pytest.approx(math.sqrt(14 / 3))
