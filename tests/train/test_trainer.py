import dataclasses
import json

import pytest
import torch
from helpers.training import make_tiny
from torch import nn

from go4align.benchmarks import Protocol
from go4align.train import MethodSpec, Trainer, parse_method_spec, train_run
from go4align.train.results import Trace, summarise, trace_points, validation_score
from go4align.weighting import LossWeighting

RESULT_KEYS = [
    "benchmark",
    "method",
    "method_label",
    "method_options",
    "seed",
    "tasks",
    "metrics",
    "directions",
    "reporting_rule",
    "selected_epoch",
    "stl_reference",
    "epochs",
    "time_per_epoch_s",
    "step_time_ms",
    "peak_memory_mb",
    "peak_memory_method",
    "device",
    "trace",
    "complete",
    "nonfinite",
    "skipped_steps",
    "provenance",
]


def test_digits_end_to_end_result_json(digits, tmp_path):
    result = train_run(digits, parse_method_spec("go4align:beta=0.001"), 1, tmp_path, progress=False)
    on_disk = json.loads((tmp_path / "result.json").read_text())
    assert on_disk == result and list(result) == RESULT_KEYS
    files = sorted(p.name for p in tmp_path.iterdir())  # no temporary files left
    assert files == ["checkpoint.json", "checkpoint.prev.pt", "checkpoint.pt", "result.json"]
    assert result["method"] == "go4align" and result["method_label"] == "go4align:beta=0.001"
    assert result["method_options"] == {"num_groups": 2, "beta": 0.001}  # the protocol's K, the spec's beta
    assert result["tasks"] == ["top_left", "bottom_right"] and result["seed"] == 1 and result["complete"]
    assert result["reporting_rule"] == "best_validation" and result["selected_epoch"] in (1, 2)
    assert result["metrics"] == result["epochs"][result["selected_epoch"] - 1]["test"]
    assert [e["epoch"] for e in result["epochs"]] == [1, 2]
    epoch = result["epochs"][0]
    assert set(epoch) == {"epoch", "time_s", "train_losses", "val", "test"}
    assert set(epoch["train_losses"]) == {"top_left", "bottom_right"} and set(epoch["val"]) == set(epoch["test"])
    assert result["time_per_epoch_s"] > 0 and result["step_time_ms"]["median"] > 0
    assert result["peak_memory_mb"] is None and result["peak_memory_method"] == "not_measured_on_cpu"
    assert result["device"] == "cpu"
    trace = result["trace"]
    # sampled every TRACE_EVERY (10) steps by default
    assert trace["steps"] == [0, 10, 20, 30] and len(trace["losses"]) == len(trace["weights"]) == 4
    assert len(trace["groups"][0]) == 2 and len(trace["group_weights"][0]) == 2


def test_ls_trace_has_no_groups(tiny, tmp_path):
    result = train_run(tiny, parse_method_spec("ls"), 0, tmp_path, progress=False)
    assert result["trace"]["groups"] is None and result["trace"]["group_weights"] is None
    assert result["trace"]["weights"][0] == [1.0, 1.0]


class Recorder(LossWeighting):
    """LS with a trainable parameter and its own learning rate, recording how it is driven."""

    def __init__(self, num_tasks, lr=0.5):
        super().__init__(num_tasks)
        self.lr = lr
        self.bias = nn.Parameter(torch.zeros(()))
        self.calls = []

    def weigh(self, losses):
        weights = torch.ones_like(losses)
        self.record(losses=losses, weights=weights)
        return weights

    def objective(self, losses, weights):
        return (weights * losses).sum() + self.bias**2 - self.bias

    def backward(self, losses, *, shared_parameters=None, shared_representation=None, retain_graph=False):
        self.calls.append(("backward", [id(p) for p in shared_parameters], shared_representation, losses.detach()))
        return super().backward(losses)

    def after_step(self, closure=None):
        again = closure()
        self.calls.append(("after_step", again, closure()))

    def end_epoch(self):
        self.calls.append(("end_epoch",))


def test_weighting_is_driven_through_the_protocol(tmp_path):
    bench = make_tiny(epochs=2)
    weighting = Recorder(2, lr=0.5)
    trainer = Trainer(bench, MethodSpec("recorder", {}, "recorder"), 0, tmp_path, progress=False, weighting=weighting)
    trainer.fit()
    kinds = [c[0] for c in weighting.calls]
    steps_per_epoch = 7  # 40 items, batch 6
    assert kinds == (["backward", "after_step"] * steps_per_epoch + ["end_epoch"]) * 2
    shared = {id(p) for p in trainer.model.shared_parameters()}
    backward, after = weighting.calls[0], weighting.calls[1]
    assert set(backward[1]) == shared and backward[2].shape == (6, 8)
    # the closure recomputes the losses of the same batch, without gradients, after the step
    assert after[1].shape == (2,) and not after[1].requires_grad and not torch.equal(after[1], backward[3])
    # the weighting's parameter trains in its own param group at its own learning rate
    checkpoint = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    groups = checkpoint["optimizer"]["param_groups"]
    assert len(groups) == 2 and groups[1]["lr"] == 0.5 and groups[0]["lr"] == bench.protocol.lr
    assert weighting.bias.item() > 0


def test_reporting_rules_and_scores():
    directions = {"a": "lower", "b": "higher"}
    epochs = [
        {"epoch": i + 1, "val": val, "test": {"a": float(i), "b": float(10 * i)}}
        for i, val in enumerate(
            [{"a": 2.0, "b": 0.5}, {"a": 1.0, "b": 0.5}, {"a": 1.0, "b": 0.5}, {"a": 3.0, "b": 0.1}]
        )
    ]
    last = Protocol(epochs=4, batch_size=1, lr=1, reporting_rule="last_k_mean:2")
    assert summarise(epochs, ["a", "b"], directions, last, None) == ({"a": 2.5, "b": 25.0}, None)
    assert summarise(epochs[:1], ["a", "b"], directions, last.replace(reporting_rule="last_k_mean:10"), None)[0] == {
        "a": 0.0,
        "b": 0.0,
    }
    best = last.replace(reporting_rule="best_validation", selection="delta_m")
    # Delta-m against a = 1, b = 0.5: epochs 2 and 3 tie at 0; the first of them is chosen
    assert summarise(epochs, ["a", "b"], directions, best, {"a": 1.0, "b": 0.5}) == ({"a": 1.0, "b": 10.0}, 2)
    assert validation_score({"a": 2.0, "b": 1.0}, ["a", "b"], directions, best, {"a": 1.0, "b": 0.5}) == 0.0
    assert validation_score({"a": 2.0, "b": 0.5}, ["a"], directions, best, {"a": 1.0, "b": 0.5}) == 100.0
    mean = best.replace(selection="mean")
    assert validation_score({"b": 0.25, "c": 0.75}, ["b", "c"], {"b": "higher", "c": "higher"}, mean, None) == -0.5


def test_trace_is_subsampled():
    assert trace_points(2) == 500 and trace_points(1000) == 250 and trace_points(100_000) == 20
    trace = Trace(total_steps=10_000, num_tasks=2)
    for step in range(10_000):
        trace.record(step, {"losses": torch.ones(2), "weights": torch.ones(2)})
    assert trace.stride == 20 and len(trace.steps) == 500 and trace.to_json()["groups"] is None


def test_schedulers_run(tmp_path):
    plateau = make_tiny(
        epochs=2,
        scheduler="plateau",
        scheduler_options={"patience": 0, "factor": 0.5},
        reporting_rule="best_validation",
        selection="delta_m",
    )
    train_run(plateau, parse_method_spec("ls"), 0, tmp_path / "plateau", progress=False)
    step = make_tiny(epochs=2, scheduler="step", scheduler_options={"step_size": 1, "gamma": 0.5})
    train_run(step, parse_method_spec("ls"), 0, tmp_path / "step", progress=False)
    lrs = torch.load(tmp_path / "step" / "checkpoint.pt", weights_only=False)["optimizer"]["param_groups"][0]["lr"]
    assert lrs == pytest.approx(1e-2 * 0.25)


def test_progress_line(tiny, tmp_path, capsys):
    train_run(tiny, parse_method_spec("ls"), 0, tmp_path, progress=True)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and lines[0].startswith("[tiny] ls seed0 epoch 1/3 ") and "test reg_mse=" in lines[0]


def test_bad_arguments(tiny, tmp_path):
    spec = parse_method_spec("ls")
    with pytest.raises(ValueError, match="seed must be an int >= 0, got -1"):
        Trainer(tiny, spec, -1, tmp_path)
    with pytest.raises(ValueError, match="checkpoint_every must be a positive int or None, got 0"):
        Trainer(tiny, spec, 0, tmp_path, checkpoint_every=0)
    with pytest.raises(ValueError, match="focus_task must be one of"):
        Trainer(tiny, spec, 0, tmp_path, focus_task="nope")
    with pytest.raises(ValueError, match="device must name a torch device"):
        Trainer(tiny, spec, 0, tmp_path, device="gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="torch.cuda.is_available"):
            Trainer(tiny, spec, 0, tmp_path, device="cuda")


def test_resuming_someone_elses_checkpoint_is_refused(tiny, tmp_path):
    train_run(tiny, parse_method_spec("ls"), 0, tmp_path, progress=False)
    with pytest.raises(ValueError, match=r"different run \(differs in \['method_label', 'weighting'\]"):
        train_run(tiny, parse_method_spec("go4align"), 0, tmp_path, progress=False)
    with pytest.raises(ValueError, match=r"differs in \['protocol'\]"):
        train_run(tiny.with_protocol(epochs=4), parse_method_spec("ls"), 0, tmp_path, progress=False)


def test_metric_accumulator_must_match_the_tasks(tmp_path):
    bench = make_tiny(epochs=1)
    broken = dataclasses.replace(
        bench, metrics=lambda: type("M", (), {"update": lambda *a: None, "compute": lambda s: {"x": 1.0}})()
    )
    with pytest.raises(ValueError, match=r"returned \['x'\], but the tasks declare \['cls_acc', 'reg_mse'\]"):
        train_run(broken, parse_method_spec("ls"), 0, tmp_path, progress=False)


def test_a_progress_callable_receives_the_epoch_lines(tiny, tmp_path, capsys):
    lines = []
    train_run(tiny, parse_method_spec("ls"), 0, tmp_path, progress=lines.append)
    assert len(lines) == 3
    assert all(line.startswith(f"[tiny] ls seed0 epoch {k}/3 ") for k, line in zip((1, 2, 3), lines))
    assert capsys.readouterr().out == ""  # the callable shows them, not print


@pytest.mark.parametrize("every", [1, 3])
def test_trace_every_records_every_kth_step_in_full_detail(digits, tmp_path, every):
    """trace_every=k records every k-th step, GO4Align's Q and indicators included; the default
    records the same values at its own steps, and reading them changes nothing in the run."""
    spec = parse_method_spec("go4align")
    full = train_run(digits, spec, 0, tmp_path / "full", progress=False, trace_every=every)
    default = train_run(digits, spec, 0, tmp_path / "default", progress=False)
    steps = list(range(0, 32, every))
    trace, sampled = full["trace"], default["trace"]
    assert trace["steps"] == steps and trace["detail"]["steps"] == steps
    assert len(trace["groups"]) == len(trace["detail"]["indicators"]) == len(steps)
    assert sampled["steps"] == [0, 10, 20, 30]
    for key in ("losses", "weights", "groups", "group_weights"):
        assert [trace[key][steps.index(s)] for s in sampled["steps"] if s in steps] == [
            sampled[key][i] for i, s in enumerate(sampled["steps"]) if s in steps
        ]
    assert (
        full["metrics"] == default["metrics"]
        and full["epochs"][-1]["train_losses"] == default["epochs"][-1]["train_losses"]
    )


def test_trace_every_is_checked_and_kept_on_resume(tiny, tmp_path):
    with pytest.raises(ValueError, match="trace_every must be a positive int or None, got 0"):
        Trainer(tiny, parse_method_spec("ls"), 0, tmp_path, trace_every=0)
    with pytest.raises(ValueError, match="every must be a positive int or None, got True"):
        Trace(10, 2, every=True)

    class Stop(Exception):
        pass

    def stop_at_step_9(info):
        if info.global_step == 9:
            raise Stop

    trainer = Trainer(
        tiny, parse_method_spec("ls"), 0, tmp_path, trace_every=2, checkpoint_every=4, callbacks=[stop_at_step_9]
    )
    assert trainer.global_step is None
    with pytest.raises(Stop):
        trainer.fit()
    assert trainer.global_step == 9 and trainer.state.epoch == 1
    # resumed from step 8 without the option: the trace keeps the stride it started with
    resumed = Trainer(tiny, parse_method_spec("ls"), 0, tmp_path, progress=False)
    assert resumed.fit()["trace"]["steps"] == list(range(0, 21, 2)) and resumed.global_step == 21
