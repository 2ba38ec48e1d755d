"""RunState: the run's progress, changed only by count_step and next_epoch, stored as plain values."""

import io

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from go4align.train.state import RunState


def fresh(num_tasks=2, seed=0):
    return RunState.start(num_tasks, torch.Generator().manual_seed(seed))


def test_a_run_starts_at_zero_with_the_data_order_of_its_seed():
    state = fresh(3, seed=7)
    assert (state.epoch, state.step_in_epoch, state.global_step, state.skipped_steps) == (0, 0, 0, 0)
    assert state.loss_sums.dtype == torch.float64 and torch.equal(state.loss_sums, torch.zeros(3, dtype=torch.float64))
    assert torch.equal(state.data_order_at_epoch_start, torch.Generator().manual_seed(7).get_state())
    assert state.history == [] and state.previous_peak_mb is None


def test_skipped_steps_count_as_steps_but_not_towards_the_mean():
    state = fresh()
    state.count_step(torch.tensor([1.0, 2.0]), skipped=False)
    state.count_step(torch.tensor([float("nan"), 5.0]), skipped=True)
    state.count_step(torch.tensor([3.0, 4.0]), skipped=False)
    assert (state.step_in_epoch, state.global_step, state.skipped_steps, state.skipped_in_epoch) == (3, 3, 1, 1)
    assert state.train_losses().tolist() == [2.0, 3.0]


def test_an_epoch_of_skipped_steps_has_zero_losses_not_nan():
    state = fresh()
    state.count_step(torch.tensor([float("inf"), 1.0]), skipped=True)
    assert state.train_losses().tolist() == [0.0, 0.0]


def test_next_epoch_keeps_the_entry_and_the_run_counts_and_resets_the_epochs():
    state, order = fresh(), torch.Generator().manual_seed(0)
    state.count_step(torch.tensor([1.0, 1.0]), skipped=True)
    state.count_step(torch.tensor([1.0, 1.0]), skipped=False)
    state.epoch_time = 1.5
    torch.randperm(10, generator=order)  # the epoch's order moved the generator on
    state.next_epoch({"epoch": 1}, order)
    assert state.history == [{"epoch": 1}] and state.epoch == 1
    assert (state.step_in_epoch, state.skipped_in_epoch, state.epoch_time) == (0, 0, 0.0)
    assert (state.global_step, state.skipped_steps) == (2, 1)
    assert torch.equal(state.loss_sums, torch.zeros(2, dtype=torch.float64))
    assert torch.equal(state.data_order_at_epoch_start, order.get_state())


def test_the_dict_round_trips_through_a_weights_only_load():
    state = fresh()
    state.count_step(torch.tensor([0.5, 0.25]), skipped=False)
    state.next_epoch({"epoch": 1, "train_losses": {"a": 0.5}, "val": None}, torch.Generator())
    state.count_step(torch.tensor([2.0, 4.0]), skipped=False)
    state.previous_peak_mb = 12.5
    buffer = io.BytesIO()
    torch.save(state.to_dict(), buffer)
    buffer.seek(0)
    again = RunState.from_dict(torch.load(buffer, weights_only=True))
    assert again.to_dict().keys() == state.to_dict().keys()
    for key, value in state.to_dict().items():
        other = again.to_dict()[key]
        assert torch.equal(other, value) if isinstance(value, torch.Tensor) else other == value, key


def test_a_dict_with_missing_or_unknown_keys_is_refused_by_name():
    saved = fresh().to_dict()
    del saved["history"]
    saved["step_times"] = []
    with pytest.raises(ValueError, match=r"missing \['history'\], unknown \['step_times'\]"):
        RunState.from_dict(saved)


@given(st.lists(st.tuples(st.floats(0, 1e6), st.floats(0, 1e6), st.booleans()), max_size=30))
def test_the_epoch_mean_is_the_mean_of_the_counted_steps(steps):
    state = fresh()
    for a, b, skipped in steps:
        state.count_step(torch.tensor([a, b], dtype=torch.float32), skipped)
    counted = [(a, b) for a, b, skipped in steps if not skipped]
    assert state.global_step == state.step_in_epoch == len(steps)
    assert state.skipped_steps == len(steps) - len(counted)
    expected = [
        sum(float(torch.tensor(v, dtype=torch.float32)) for v in column) / max(1, len(counted))
        for column in zip(*counted)
    ]
    assert state.train_losses().tolist() == pytest.approx(expected or [0.0, 0.0], rel=1e-12)
