"""The per-method step-time script keeps working: its step is the trainer's, for any method."""

import pytest
import torch

from go4align.benchmarks import get_benchmark


@pytest.fixture(scope="module")
def script(load_script):
    return load_script("methods_step")


@pytest.mark.parametrize("method", ["ls", "go4align", "famo", "mgda", "mgda-ub"])
def test_a_step_trains_the_benchmark_model_with_each_kind_of_method(script, method):
    """The same step on the synthetic benchmark (same model contract as QM9's MPNN and MultiLeNet): it runs and
    moves the model, for loss-oriented, after-step (FAMO), parameter- and representation-level
    gradient methods."""
    benchmark = get_benchmark("synthetic")
    inputs, targets = script.first_batch(benchmark, 16)
    step = script.make_step(benchmark, method, inputs, targets)
    before = [p.detach().clone() for p in step.model.parameters()]
    step()
    assert any(not torch.equal(b, a) for b, a in zip(before, step.model.parameters()))


def test_batch_size_must_be_positive(script):
    import argparse

    assert script.positive("8") == 8
    with pytest.raises(argparse.ArgumentTypeError, match="must be a positive int, got '0'"):
        script.positive("0")


@pytest.mark.parametrize("name", ["methods_step", "weighting_step"])
@pytest.mark.parametrize("argument", ["--repeats", "--threads"])
def test_counts_below_one_are_refused_naming_the_value(load_script, name, argument, monkeypatch, capsys):
    """--repeats 0 ended in statistics' "no median for empty data"; --threads 0 in torch's error."""
    monkeypatch.setattr("sys.argv", [f"{name}.py", argument, "0"])
    with pytest.raises(SystemExit):
        load_script(name).main()
    assert f"argument {argument}: must be a positive int, got '0'" in capsys.readouterr().err
