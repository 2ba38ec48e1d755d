"""evaluate: a benchmark's metrics of a model on one split, alone."""

import dataclasses

import pytest
import torch

from go4align.train.evaluation import evaluate


def by_hand(bench, model, split):
    """The metrics from the whole split in one batch."""
    dataset = bench.dataset(split)
    items = [dataset[i] for i in range(len(dataset))]
    inputs = torch.stack([x for x, _ in items])
    targets = {task: torch.stack([y[task] for _, y in items]) for task in items[0][1]}
    accumulator = bench.metrics()
    with torch.no_grad():
        accumulator.update(model(inputs), targets)
    return accumulator.compute()


@pytest.mark.parametrize("eval_batch_size", [None, 1, 5, 100])
def test_the_metrics_do_not_depend_on_the_batches(tiny, eval_batch_size):
    bench = tiny.with_protocol(eval_batch_size=eval_batch_size)
    model = bench.build_model(0)
    model.eval()
    expected = by_hand(bench, model, "val")
    values = evaluate(bench, model, "val")
    assert values.keys() == expected.keys() == {"reg_mse", "cls_acc"}
    assert values == pytest.approx(expected, rel=1e-6)


def test_the_model_is_evaluated_in_eval_mode_and_left_in_train_mode(tiny):
    model = tiny.build_model(0)  # dropout: in train mode, two evaluations would differ
    first, second = evaluate(tiny, model, "test"), evaluate(tiny, model, "test")
    assert first == second and model.training


def test_metrics_other_than_the_tasks_declare_are_refused(tiny):
    broken = dataclasses.replace(
        tiny, metrics=lambda: type("M", (), {"update": lambda *a: None, "compute": lambda s: {"x": 1.0}})()
    )
    with pytest.raises(ValueError, match=r"'tiny': the metric accumulator returned \['x'\], but the tasks declare"):
        evaluate(broken, broken.build_model(0), "test")
