"""TensorBoard logging: the event files, read back, hold the values of result.json and its trace."""

import json
import pickle
import sys
import time

import numpy as np
import pytest
import torch
from helpers.training import make_tiny

from go4align.cli import main
from go4align.train import Trainer, parse_method_spec, run_dir_of, run_grid
from go4align.train.tensorboard import EVENTS_DIR, TensorBoardCallback

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")

TASKS = ["reg", "cls"]


def read_events(run_dir) -> dict[str, dict[int, float]]:
    """Every scalar of a run's event directory, {tag: {step: value}}, after TensorBoard's purge
    of what an interrupted process logged beyond its checkpoint; each step must appear once."""
    accumulator = event_accumulator.EventAccumulator(str(run_dir / EVENTS_DIR), size_guidance={"scalars": 0})
    accumulator.Reload()
    events = {}
    for tag in accumulator.Tags()["scalars"]:
        steps = [event.step for event in accumulator.Scalars(tag)]
        assert len(steps) == len(set(steps)), f"{tag}: steps logged more than once: {steps}"
        events[tag] = {event.step: event.value for event in accumulator.Scalars(tag)}
    return events


def steps_of(events: dict, tag: str) -> list[int]:
    return sorted(events[tag])


class Record:
    """The exact per-step diagnostics a callback sees, for comparison with the events."""

    def __init__(self):
        self.rows = {}

    def __call__(self, info):
        if not info.skipped:
            self.rows[info.run_dir, info.global_step - 1] = {
                key: info.diagnostics[key].tolist()
                for key in ("losses", "weights", "groups", "group_weights")
                if key in info.diagnostics
            }


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    out = tmp_path_factory.mktemp("grid")
    record = Record()
    with TensorBoardCallback(TASKS) as callback:
        results = run_grid(
            make_tiny(epochs=2), ["ls", "go4align:num_groups=2"], [0], out, progress=False,
            callbacks=[callback, record],
        )  # fmt: skip
    return out, results, record.rows


@pytest.mark.parametrize("label", ["ls", "go4align:num_groups=2"])
def test_every_step_logs_the_losses_and_weights_the_weighting_computed(grid, label):
    out, results, rows = grid
    run_dir = run_dir_of(out, label, 0)
    events = read_events(run_dir)
    mine = {step: row for (directory, step), row in rows.items() if directory == run_dir}
    assert len(mine) == 14  # 2 epochs of ceil(40 / 6) steps
    for m, task in enumerate(TASKS):
        assert steps_of(events, f"loss/{task}") == steps_of(events, f"weight/{task}") == sorted(mine)
        for step, row in mine.items():  # TensorBoard keeps float32
            assert events[f"loss/{task}"][step] == np.float32(row["losses"][m])
            assert events[f"weight/{task}"][step] == np.float32(row["weights"][m])


@pytest.mark.parametrize("label", ["ls", "go4align:num_groups=2"])
def test_the_events_equal_the_trace_of_result_json(grid, label):
    out, results, _ = grid
    trace = results[label, 0]["trace"]
    events = read_events(run_dir_of(out, label, 0))
    keys = {"losses": "loss/{}", "weights": "weight/{}", "groups": "group/{}"}
    for key, tag in keys.items():
        if trace[key] is None:
            continue
        for step, values in zip(trace["steps"], trace[key]):
            logged = [events[tag.format(task)][step] for task in TASKS]
            # the trace keeps 4 significant digits, TensorBoard float32
            np.testing.assert_allclose(logged, values, rtol=6e-4)
    grouped = trace["groups"] is not None
    assert grouped == (label != "ls")
    assert any(tag.startswith("group") for tag in events) == grouped
    if grouped:
        assert all(float(v).is_integer() for task in TASKS for v in events[f"group/{task}"].values())
        for step, weights in zip(trace["steps"], trace["group_weights"]):
            logged = [events[f"group_weight/{k}"][step] for k in range(len(weights))]
            np.testing.assert_allclose(logged, weights, rtol=6e-4)


@pytest.mark.parametrize("label", ["ls", "go4align:num_groups=2"])
def test_every_epoch_logs_the_metrics_of_result_json(grid, label):
    out, results, _ = grid
    run_dir = run_dir_of(out, label, 0)
    result = json.loads((run_dir / "result.json").read_text())
    events = read_events(run_dir)
    epoch_steps = [6, 13]  # the step index of each epoch's last step
    for step, entry in zip(epoch_steps, result["epochs"], strict=True):
        for task, value in entry["train_losses"].items():
            assert events[f"train_loss/{task}"][step] == np.float32(value)
        for split in ("val", "test"):
            for metric, value in entry[split].items():
                assert events[f"{split}/{metric}"][step] == np.float32(value)
    assert steps_of(events, "test/reg_mse") == epoch_steps


class Interrupt(Exception):
    pass


def interrupt_at(step):
    def callback(info):
        if info.global_step == step:
            raise Interrupt

    return callback


def fit(run_dir, callbacks, **options):
    method = parse_method_spec("go4align:num_groups=2")
    return Trainer(make_tiny(), method, 0, run_dir, progress=False, callbacks=callbacks, **options).fit()


@pytest.mark.parametrize("flush_every", [None, 4])
def test_a_resumed_run_logs_each_step_once_with_the_uninterrupted_values(tmp_path, flush_every):
    with TensorBoardCallback(TASKS) as callback:
        fit(tmp_path / "whole", [callback])
    whole = read_events(tmp_path / "whole")
    run_dir = tmp_path / "cut"
    # 7 steps per epoch, a checkpoint every 4 steps: cut mid-epoch 2 (step 10), resumed from step 8
    callback = TensorBoardCallback(TASKS, flush_every=flush_every)
    with pytest.raises(Interrupt):
        fit(run_dir, [callback, interrupt_at(10)], checkpoint_every=4)
    callback.close()  # as the CLI does when a run stops
    # event files are named by the second they are opened in, and read in that order: a resumed
    # process's come after the first one's, as they do when it is another process, started later
    time.sleep(1.1)
    with TensorBoardCallback(TASKS, flush_every=flush_every) as callback:
        fit(run_dir, [callback], checkpoint_every=4)
    assert read_events(run_dir) == whole  # the events logged again replace the first process's


def test_the_callback_adds_no_host_copy_per_step(tmp_path, monkeypatch):
    """Buffered steps reach the host in one copy per flush: at each epoch end, and every
    ``flush_every`` steps; nothing is read from a tensor in between."""
    calls = []
    for name in ("cpu", "item", "tolist", "numpy", "__float__", "__bool__"):
        original = getattr(torch.Tensor, name)

        def counted(tensor, *args, _name=name, _original=original, **kwargs):
            calls.append((_name, tuple(tensor.shape)))
            return _original(tensor, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    callback = TensorBoardCallback(TASKS, flush_every=5)
    run_dir = tmp_path / "run"
    info = run_dir_info(run_dir)
    steps = [info(step) for step in range(1, 6)]
    calls.clear()
    for step in steps[:4]:
        callback(step)
    assert calls == []
    callback(steps[4])
    assert calls[0] == ("cpu", (5 * 4,))  # 5 steps of 2 losses and 2 weights, then read on the host
    assert all(shape == (5 * 4,) for _, shape in calls)
    monkeypatch.undo()
    callback.close()
    assert read_events(run_dir)["weight/cls"] == {s: np.float32(1.5 + s) for s in range(5)}


def run_dir_info(run_dir):
    from go4align.train import StepInfo

    def info(step):
        diagnostics = {"losses": torch.tensor([1.0, 2.0]) * step, "weights": torch.tensor([0.5, 1.5]) + step - 1}
        return StepInfo(0, step, step, diagnostics["losses"], run_dir, diagnostics=diagnostics)

    return info


def test_skipped_steps_log_nothing(tmp_path):
    from go4align.train import StepInfo

    with TensorBoardCallback(TASKS) as callback:
        callback(StepInfo(0, 1, 1, torch.tensor([float("nan"), 1.0]), tmp_path, skipped=True))
    assert not (tmp_path / EVENTS_DIR).exists()


def test_bench_tensorboard_writes_one_event_directory_per_run(tmp_path, capsys):
    config, out = tmp_path / "toy.toml", tmp_path / "out"
    config.write_text('benchmark = "toy"\n[benchmark_options]\nsteps_per_epoch = 10\n[protocol]\nepochs = 2\n')
    argv = ["bench", "--config", str(config), "--methods", "ls,go4align", "--out", str(out), "--quiet"]
    assert main([*argv, "--tensorboard", "--checkpoint-every", "3"]) == 0
    for label in ("ls", "go4align"):
        run_dir = run_dir_of(out, label, 0)
        result = json.loads((run_dir / "result.json").read_text())
        events = read_events(run_dir)
        # every step is logged; result.json's trace samples every 10th (trace_every)
        assert steps_of(events, "loss/f1") == list(range(20))
        assert result["trace"]["steps"] == [0, 10]
        assert steps_of(events, "test/f2") == [9, 19]
        assert ("group/f1" in events) == (label == "go4align")


def test_missing_tensorboard_is_an_import_error_naming_the_extra(tmp_path, monkeypatch, capsys):
    for name in [
        n for n in sys.modules if n == "tensorboard" or n.startswith(("tensorboard.", "torch.utils.tensorboard"))
    ]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    with pytest.raises(ImportError, match=r"pip install 'go4align\[tensorboard\]'"):
        TensorBoardCallback()
    argv = ["bench", "--benchmark", "toy", "--methods", "ls", "--out", str(tmp_path / "out"), "--tensorboard"]
    assert main(argv) == 2
    assert "go4align[tensorboard]" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # refused before anything ran


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"flush_every": 0}, ValueError, "flush_every must be a positive int or None, got 0"),
        ({"flush_every": True}, ValueError, "flush_every must be a positive int or None, got True"),
        ({"task_names": "reg,cls"}, TypeError, "task_names must be a list of str or None, got 'reg,cls'"),
    ],
)
def test_bad_options_are_named(options, error, message):
    with pytest.raises(error, match=message):
        TensorBoardCallback(**options)


def test_task_names_must_match_the_losses(tmp_path):
    callback = TensorBoardCallback(["a", "b", "c"])
    with pytest.raises(ValueError, match=r"task_names has 3 names, but the losses have 2 tasks"):
        callback(run_dir_info(tmp_path)(1))


def test_a_copy_for_another_process_holds_no_open_writer(tmp_path):
    callback = TensorBoardCallback(TASKS, flush_every=1)
    callback(run_dir_info(tmp_path)(1))
    copy = pickle.loads(pickle.dumps(callback))
    assert copy.runs == {} and copy.flush_every == 1 and copy.task_names == TASKS
    callback.close()


def test_an_epoch_whose_steps_were_all_skipped_still_logs_its_metrics(tmp_path):
    from go4align.train import EpochInfo

    entry = {"epoch": 1, "time_s": 0.1, "train_losses": {"reg": 0.5, "cls": 0.25}, "val": None, "test": {"acc": 0.75}}
    with TensorBoardCallback(TASKS) as callback:
        callback.end_epoch(EpochInfo(1, 2, 3, entry, tmp_path))
    assert read_events(tmp_path) == {"train_loss/reg": {2: 0.5}, "train_loss/cls": {2: 0.25}, "test/acc": {2: 0.75}}
