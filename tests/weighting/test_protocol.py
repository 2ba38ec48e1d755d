"""Properties every method has, through the same calls and no special case by name: each test
runs every method of ``helpers.methods.METHODS`` with each of its option sets (torch's
``OptimizerInfo`` pattern), and asks the table, not the name, what to expect."""

from __future__ import annotations

import copy
import pickle
import re

import pytest
import torch
from helpers.methods import DEFAULTS, METHODS, OPTION_SETS
from helpers.weighting import HardSharing, build, resumes_identically, train

from go4align.weighting import available
from go4align.weighting.base import Diagnostics

NAMES = available()


def test_the_option_table_covers_every_registered_method():
    assert set(NAMES) <= {info.label for info in METHODS}


def check_three_steps(method, model: HardSharing) -> None:
    """Three steps of the protocol's loop: weights of the right shape, detached and finite (or
    ``None`` exactly for a weightless method), the diagnostics, and a model that moved."""
    num_tasks = len(model.heads)
    before = copy.deepcopy(model.state_dict())
    returned = train(method, model, steps=3)
    assert method.step == 3
    for weights in returned:
        if weights is not None:
            assert weights.shape == (num_tasks,)
            assert not weights.requires_grad
            assert torch.isfinite(weights).all()
    assert set(method.diagnostics) >= {"losses"}
    assert all(not v.requires_grad for v in method.diagnostics.values())
    if returned[-1] is not None:
        torch.testing.assert_close(method.diagnostics["weights"], returned[-1].to(method.diagnostics["weights"].dtype))
    for p in model.parameters():
        assert torch.isfinite(p).all()
    changed = [not torch.equal(a, b) for a, b in zip(before.values(), model.state_dict().values())]
    assert any(changed)


@pytest.mark.parametrize("stacked", [False, True], ids=["vector-losses", "stacked-losses"])
@pytest.mark.parametrize("info, options", OPTION_SETS)
def test_three_training_steps(info, options, stacked):
    check_three_steps(info.make_or_skip(3, **options), HardSharing(3, stacked=stacked))


@pytest.mark.parametrize("info, options", DEFAULTS)
def test_three_training_steps_with_two_tasks(info, options):
    check_three_steps(info.make_or_skip(2, **options), HardSharing(2))


@pytest.mark.parametrize("info, options", OPTION_SETS)
def test_only_a_method_the_table_calls_weightless_returns_no_weights(info, options):
    weights = train(info.make_or_skip(3, **options), HardSharing(3), steps=1)[0]
    assert weights is not None or info.weightless


@pytest.mark.parametrize("info, options", OPTION_SETS)
def test_state_dict_round_trip_resumes_bit_identically(info, options):
    resumes_identically(lambda: info.make_or_skip(3, **options), 3)


@pytest.mark.parametrize("name", NAMES)
def test_the_step_count_is_saved_and_restored(name):
    """The step count is a plain int (no tensor operation, no host read on a GPU), saved under
    the key ``step`` as a 0-d int64 tensor (what ``torch.load(weights_only=True)`` reads); a
    state dict without it is refused in strict mode like any missing key."""
    model = HardSharing(3)
    method = build(name, 3)
    train(method, model, steps=2)
    state = method.state_dict()
    assert isinstance(method.step, int) and method.step == 2
    assert state["step"].dtype == torch.int64 and state["step"].shape == () and int(state["step"]) == 2
    fresh = build(name, 3)
    fresh.load_state_dict(state)
    assert fresh.step == 2
    with pytest.raises(RuntimeError, match='Missing key.*"step"'):
        build(name, 3).load_state_dict({k: v for k, v in state.items() if k != "step"})
    with pytest.raises(RuntimeError, match='Unexpected key.*"stray"'):
        build(name, 3).load_state_dict(dict(state, stray=torch.zeros(1)))
    for bad in (torch.tensor([1, 2]), torch.tensor(2.5), torch.tensor(-1), 3):
        with pytest.raises(RuntimeError, match='"step" must be a 0-d integer tensor >= 0.*got'):
            build(name, 3).load_state_dict(dict(state, step=bad))


@pytest.mark.parametrize("info, options", OPTION_SETS)
def test_two_runs_with_the_same_seed_are_identical(info, options):
    results = []
    for _ in range(2):
        model = HardSharing(3)
        train(info.make_or_skip(3, **options), model, steps=3)
        results.append([p.detach().clone() for p in model.parameters()])
    for a, b in zip(*results):
        assert torch.equal(a, b)


@pytest.mark.parametrize("info, options", OPTION_SETS)
def test_bad_losses_are_rejected(info, options):
    method = info.make_or_skip(3, **options)
    model = HardSharing(3)
    losses, z = model()
    with pytest.raises(ValueError, match="losses"):
        method.backward(losses[:2], shared_parameters=model.shared_parameters(), shared_representation=z)
    with pytest.raises(ValueError):
        method.backward(
            torch.stack([losses[0], losses[1] * float("nan"), losses[2]]),
            shared_parameters=model.shared_parameters(),
            shared_representation=z,
        )


@pytest.mark.parametrize("info, options", OPTION_SETS)
def test_bad_num_tasks_is_rejected(info, options):
    info.make_or_skip(3, **options)  # skips when the method's optional dependency is missing
    for bad in (0, -1, 2.0, True, "3"):
        with pytest.raises(ValueError, match="num_tasks"):
            info.make(bad, **options)


@pytest.mark.parametrize("info, options", OPTION_SETS)
def test_a_missing_shared_argument_is_named(info, options):
    """Without ``shared_parameters`` and ``shared_representation``, a gradient method refuses
    naming the one it needs; a loss-oriented one runs, or refuses the same way (FAMO's clipping)."""
    method = info.make_or_skip(3, **options)
    losses, _ = HardSharing(3)()
    try:
        method.backward(losses)
    except ValueError as error:
        assert re.search("shared_parameters|shared_representation", str(error)), error
    else:
        assert not info.gradient_oriented, "a gradient method ran without the shared parameters or representation"


@pytest.mark.parametrize("info, options", OPTION_SETS)
def test_copies_and_pickles_train_on(info, options):
    method = info.make_or_skip(3, **options)
    train(method, HardSharing(3), steps=1)
    for clone in (copy.deepcopy(method), pickle.loads(pickle.dumps(method))):
        assert repr(clone) == repr(method)
        train(clone, HardSharing(3), steps=1)


def test_a_diagnostic_recorded_as_a_callable_is_computed_once_when_first_read():
    calls = []

    def groups():
        calls.append(1)
        return torch.tensor([0, 1, 1])

    diagnostics = Diagnostics({"weights": torch.ones(3), "groups": groups})
    assert calls == [] and set(diagnostics) == {"weights", "groups"}  # listed before it is computed
    assert diagnostics["groups"].tolist() == [0, 1, 1] and diagnostics["groups"].tolist() == [0, 1, 1]
    assert calls == [1]
    copied = pickle.loads(pickle.dumps(Diagnostics({"groups": groups})))  # a pickle holds the value
    assert copied["groups"].tolist() == [0, 1, 1] and calls == [1, 1]
