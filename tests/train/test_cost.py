"""Cost columns that do not depend on what ran before: steady-state step times, per-run peak memory."""

import time

import pytest
import torch
from torch import nn

from go4align.benchmarks import Benchmark, HardSharing, Metric, Protocol, SampleMean, Task, task_losses
from go4align.benchmarks.api import TensorTaskDataset
from go4align.train import parse_method_spec, run_grid, train_run
from go4align.train.cost import StepTimer, step_time_summary
from go4align.train.placement import PeakMemory

STEPS_PER_EPOCH = 8  # 32 items, batch 4
# A fake delay in seconds. A sample that contains it reads 1e6 ms; a real step of the tiny model
# takes far less than SLOW milliseconds (1 s), so "every sample < SLOW" means none contains it.
SLOW = 1000.0


class FakeClock:
    """time.perf_counter plus an offset that a test advances to make a moment look slow."""

    def __init__(self):
        self.real = time.perf_counter
        self.offset = 0.0

    def __call__(self):
        return self.real() + self.offset


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(time, "perf_counter", fake)
    return fake


def tiny_benchmark(epochs=2, on_loss=None):
    generator = torch.Generator().manual_seed(0)
    x = {split: torch.randn(n, 3, generator=generator) for split, n in (("train", 32), ("test", 8))}
    data = {split: TensorTaskDataset(v, {"a": v.sum(1), "b": v[:, 0]}) for split, v in x.items()}
    losses = task_losses({"a": nn.functional.mse_loss, "b": nn.functional.mse_loss})

    def counted_losses(predictions, targets):
        if on_loss is not None:
            on_loss()
        return losses(predictions, targets)

    return Benchmark(
        name="tiny",
        tasks=[Task("a", Metric("a_mse", False)), Task("b", Metric("b_mse", False))],
        datasets=data.__getitem__,
        splits=("train", "test"),
        model=lambda seed: HardSharing(
            nn.Sequential(nn.Linear(3, 4), nn.Tanh()),
            {task: nn.Sequential(nn.Linear(4, 1), nn.Flatten(0)) for task in ("a", "b")},
        ),
        losses=counted_losses,
        metrics=lambda: SampleMean({f"{t}_mse": (t, lambda p, y: (p - y) ** 2) for t in ("a", "b")}),
        protocol=Protocol(epochs=epochs, batch_size=4, lr=1e-2, reporting_rule="last_k_mean:1"),
    )


def test_the_timer_skips_warmup_and_the_time_between_restarts(clock):
    timer = StepTimer(torch.device("cpu"), first_step=0, total_steps=40)
    assert timer.warmup == 10 and timer.stride == 1
    timer.restart(0)
    for step in range(40):
        clock.offset += SLOW if step < timer.warmup else 0.002  # warm-up steps are slow
        timer.lap(step)
        if step == 20:  # a checkpoint: the clock stops, and restarts for the next step
            clock.offset += SLOW
            timer.restart(step + 1)
    summary = timer.summary()
    assert [int(sample[0]) for sample in timer.samples] == list(range(10, 40))
    assert summary["samples"] == 30 and summary["first_sampled_step"] == 10
    assert max(sample[1] for sample in timer.samples) < SLOW  # neither warm-up nor the checkpoint is in a sample
    # The fake delays are wall time only: the process's CPU time of the steps stays far below them.
    assert 0 <= summary["cpu_median"] < summary["median"]
    assert summary["median"] == pytest.approx(2.0, abs=0.5)
    assert summary["p25"] <= summary["median"] <= summary["p75"] and summary["clock"] == "perf_counter"


def test_warmup_is_at_most_half_of_a_short_run_and_long_runs_are_strided():
    assert StepTimer(torch.device("cpu"), 0, 6).warmup == 3
    assert StepTimer(torch.device("cpu"), 0, 1).warmup == 1  # nothing is sampled: summary is None
    assert StepTimer(torch.device("cpu"), 0, 1).summary() is None
    resumed = StepTimer(torch.device("cpu"), first_step=100, total_steps=10_000, samples=[[50, 1.0, 1.0]])
    assert resumed.first_sampled == 110 and resumed.stride == 5
    assert [resumed.sampled(step) for step in (105, 110, 111, 115)] == [False, True, False, True]
    assert resumed.summary()["samples"] == 1  # the samples from before the resume are kept


def test_step_time_summary_percentiles():
    summary = step_time_summary([float(v) for v in range(1, 102)], "perf_counter", 1, 10)
    assert (summary["p10"], summary["p25"], summary["median"], summary["p75"], summary["p90"]) == (
        11.0,
        26.0,
        51.0,
        76.0,
        91.0,
    )
    assert step_time_summary([], "perf_counter", 1, None) is None


@pytest.mark.parametrize("order", [("ls", "go4align"), ("go4align", "ls")])
def test_two_methods_in_one_process_report_the_same_costs_in_either_order(order, clock, tmp_path):
    """The first run in a process pays one-off costs: here the first three loss computations of
    the process look one (fake) second slow. Whichever method runs first, no sample contains them,
    and the samples are the same steps of each run; memory is not measured on the CPU (never a
    process-wide figure that depends on the runs before)."""
    calls = []

    def cold_start():
        calls.append(None)
        if len(calls) <= 3:
            clock.offset += SLOW

    bench = tiny_benchmark(epochs=2, on_loss=cold_start)
    results = run_grid(bench, list(order), [0], tmp_path, progress=False)
    total = 2 * STEPS_PER_EPOCH
    for label in order:
        result = results[label, 0]
        timing = result["step_time_ms"]
        assert timing["first_sampled_step"] == total // 2  # warm-up: half of a run this short
        assert timing["samples"] == total - total // 2
        assert 0 < timing["p10"] <= timing["median"] <= timing["p90"] < SLOW
        assert result["peak_memory_mb"] is None and result["peak_memory_method"] == "not_measured_on_cpu"


def test_evaluation_and_callbacks_are_not_step_time(clock, tmp_path):
    def slow_callback(info):
        clock.offset += SLOW

    result = train_run(
        tiny_benchmark(epochs=3), parse_method_spec("ls"), 0, tmp_path, progress=False, callbacks=[slow_callback]
    )
    assert result["step_time_ms"]["p90"] < SLOW
    assert result["step_time_ms"]["samples"] == 3 * STEPS_PER_EPOCH - 10


def test_a_resumed_run_keeps_its_samples_and_skips_a_new_warmup(tmp_path):
    class Stop(Exception):
        pass

    def stop_at(step):
        def callback(info):
            if info.global_step == step:
                raise Stop

        return callback

    bench = tiny_benchmark(epochs=4)
    with pytest.raises(Stop):
        train_run(
            bench, parse_method_spec("ls"), 0, tmp_path, progress=False, checkpoint_every=1, callbacks=[stop_at(20)]
        )
    result = train_run(bench, parse_method_spec("ls"), 0, tmp_path, progress=False)
    # First process: steps 10..19 sampled (warm-up 10). Second: steps 20..31, warm-up 6 (half), so 26..31.
    assert result["step_time_ms"]["samples"] == 10 + 6
    assert result["step_time_ms"]["first_sampled_step"] == 10


def test_cpu_peak_memory_is_not_measured():
    memory = PeakMemory(torch.device("cpu"))
    assert memory.megabytes() is None and memory.method == "not_measured_on_cpu"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("order", [("ls", "go4align"), ("go4align", "ls")])
def test_cuda_peak_memory_does_not_depend_on_the_runs_before(order, tmp_path):
    bench = tiny_benchmark(epochs=1)
    results = run_grid(bench, list(order), [0], tmp_path, progress=False, device="cuda")
    alone = {
        label: train_run(bench, parse_method_spec(label), 0, tmp_path / "alone" / label, progress=False, device="cuda")[
            "peak_memory_mb"
        ]
        for label in order
    }
    for label in order:
        assert results[label, 0]["peak_memory_method"] == "cuda_max_memory_allocated"
        assert results[label, 0]["peak_memory_mb"] == alone[label] > 0
        assert results[label, 0]["step_time_ms"]["clock"] == "cuda_events"
