"""What a new data set without a single-task reference is told, and what last_k_mean reports."""

import re
import warnings

import pytest
from torch import nn

from go4align.benchmarks import Benchmark, HardSharing, Metric, Protocol, SampleMean, Task, task_losses
from go4align.train.results import summarise


def benchmark(metrics=(("a_mae", False), ("b_acc", True)), stl_reference=None, **protocol):
    tasks = [Task(name.split("_")[0], Metric(name, higher)) for name, higher in metrics]
    return Benchmark(
        name="mine",
        tasks=tasks,
        datasets=lambda split: None,
        model=lambda seed: HardSharing(nn.Linear(2, 2), {t.name: nn.Linear(2, 1) for t in tasks}),
        losses=task_losses({t.name: nn.functional.mse_loss for t in tasks}),
        metrics=lambda: SampleMean({}),
        protocol=Protocol(**{"epochs": 20, "batch_size": 2, "lr": 1e-3, **protocol}),
        stl_reference=stl_reference,
    )


def ways_out(message):
    return message.split(". Either ", 1)[1].rstrip(".").split("; or ")


@pytest.mark.parametrize("selection", ["delta_m", "mean"])
def test_one_message_with_every_way_out_for_metrics_that_point_both_ways(selection):
    with pytest.raises(ValueError) as caught:
        benchmark(reporting_rule="best_validation", selection=selection)
    message = str(caught.value)
    assert message.startswith("Benchmark 'mine': reporting_rule='best_validation' needs a validation score")
    ways = ways_out(message)
    # 'mean' cannot work when the metrics point both ways, so it is not offered.
    assert len(ways) == 2 and "last_k_mean:K" in ways[0] and "selection='delta_m'" in ways[1]
    assert "--methods stl" in ways[1] and "stl_reference=" in ways[1]
    assert "selection='mean'" not in message.split("Either")[1]


def test_every_way_out_it_names_works():
    benchmark(reporting_rule="last_k_mean:5")
    benchmark(reporting_rule="best_validation", selection="delta_m", stl_reference={"a_mae": 1.0, "b_acc": 0.5})
    same_way = (("a_err", False), ("b_err", False))
    with pytest.raises(ValueError) as caught:
        benchmark(same_way, reporting_rule="best_validation", selection="delta_m")
    assert "use selection='mean'" in ways_out(str(caught.value))[1]
    benchmark(same_way, reporting_rule="best_validation", selection="mean")


def test_a_plateau_scheduler_is_named_as_the_user_of_the_score():
    with pytest.raises(ValueError) as caught:
        benchmark(scheduler="plateau", reporting_rule="last_k_mean:5", selection="delta_m")
    message = str(caught.value)
    assert "scheduler='plateau' needs a validation score" in message
    assert "scheduler='step' or 'none'" in ways_out(message)[0]
    assert "last_k_mean" not in ways_out(message)[0]


def test_last_k_above_the_epochs_warns_and_averages_every_trained_epoch():
    with pytest.warns(
        UserWarning,
        match=re.escape("'last_k_mean:10' asks for the mean of the last 10 epochs, but the protocol trains 3"),
    ):
        protocol = Protocol(epochs=3, batch_size=1, lr=1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Protocol(epochs=10, batch_size=1, lr=1.0)
        Protocol(epochs=3, batch_size=1, lr=1.0, reporting_rule="best_validation")
    # An evaluation before training (epoch 0) never enters the mean; the three trained epochs do.
    history = [{"epoch": e, "test": {"err": float(e)}} for e in range(4)]
    metrics, selected = summarise(history, ["err"], {"err": "lower"}, protocol, None)
    assert metrics == {"err": 2.0} and selected is None
    best = Protocol(epochs=3, batch_size=1, lr=1.0, reporting_rule="best_validation")
    scored = [dict(e, val={"err": 0.0 if e["epoch"] == 0 else float(e["epoch"])}) for e in history]
    assert summarise(scored, ["err"], {"err": "lower"}, best, None) == ({"err": 1.0}, 1)


def test_the_delta_m_score_is_metrics_delta_m_over_the_selection_metrics():
    from go4align.metrics import delta_m
    from go4align.train.results import validation_score

    protocol = Protocol(epochs=1, batch_size=1, lr=1.0, reporting_rule="best_validation", selection="delta_m")
    values, reference = {"a_mae": 1.5, "b_acc": 0.4, "c_acc": 9.0}, {"a_mae": 1.0, "b_acc": 0.5, "c_acc": 1.0}
    directions = {"a_mae": "lower", "b_acc": "higher", "c_acc": "higher"}
    score = validation_score(values, ["a_mae", "b_acc"], directions, protocol, reference)
    assert score == delta_m(values, {"a_mae": 1.0, "b_acc": 0.5}, directions) == pytest.approx(35.0)
    with pytest.raises(ValueError, match="reference value of metric 'a_mae' must be finite and non-zero"):
        validation_score(values, ["a_mae"], directions, protocol, {"a_mae": 0.0})
