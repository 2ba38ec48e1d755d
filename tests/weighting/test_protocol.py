"""Properties every registered method has, through the same calls and no special case by name."""

from __future__ import annotations

import copy

import pytest
import torch
from cases import METHODS, OPTION_SETS, by_label
from helpers import HardSharing, build, resumes_identically, train

from go4align.weighting import GradientWeighting, LossWeighting, available

NAMES = available()


def test_the_option_table_covers_every_registered_method():
    assert set(NAMES) <= {info.label for info in METHODS}


@pytest.mark.parametrize("label, options", OPTION_SETS, ids=[f"{l}-{o}" for l, o in OPTION_SETS])
def test_every_option_set_trains_and_resumes_bit_identically(label, options):
    """Each option set of the table: finite weights over three steps, and a state_dict taken
    after two steps that continues exactly as the object it came from."""
    info = by_label(label)

    def fresh():
        try:
            return info.make(3, **options)
        except ImportError as error:
            pytest.skip(f"{label}: {error}")

    model, method = HardSharing(3), fresh()
    for weights in train(method, model, steps=2):
        assert weights is None or torch.isfinite(weights).all()
    state, model_copy = copy.deepcopy(method.state_dict()), copy.deepcopy(model)
    train(method, model, steps=1)
    resumed = fresh()
    resumed.load_state_dict(state)
    train(resumed, model_copy, steps=1)
    for a, b in zip(model.parameters(), model_copy.parameters()):
        assert torch.equal(a, b)


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


@pytest.mark.parametrize("num_tasks, stacked", [(2, False), (3, False), (3, True)])
@pytest.mark.parametrize("name", NAMES)
def test_three_training_steps(name, num_tasks, stacked):
    model = HardSharing(num_tasks, stacked=stacked)
    method = build(name, num_tasks)
    before = copy.deepcopy(model.state_dict())
    returned = train(method, model, steps=3)
    assert int(method.step) == 3
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


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trip_resumes_bit_identically(name):
    resumes_identically(name, 3)


@pytest.mark.parametrize("name", NAMES)
def test_two_runs_with_the_same_seed_are_identical(name):
    results = []
    for _ in range(2):
        model = HardSharing(3)
        train(build(name, 3), model, steps=3)
        results.append([p.detach().clone() for p in model.parameters()])
    for a, b in zip(*results):
        assert torch.equal(a, b)


@pytest.mark.parametrize("name", NAMES)
def test_repr_shows_the_constructor_arguments(name):
    method = build(name, 3)
    text = repr(method)
    assert type(method).__name__ in text and "num_tasks=3" in text


@pytest.mark.parametrize("name", NAMES)
def test_bad_losses_are_rejected(name):
    method = build(name, 3)
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


@pytest.mark.parametrize("name", NAMES)
def test_bad_num_tasks_is_rejected(name):
    build(name, 2)  # skips when the method's optional dependency is missing
    for bad in (0, -1, 2.0, True, "3"):
        with pytest.raises(ValueError, match="num_tasks"):
            build(name, bad)


@pytest.mark.parametrize("name", NAMES)
def test_gradient_methods_name_the_missing_argument(name):
    method = build(name, 3)
    if not isinstance(method, GradientWeighting):
        assert isinstance(method, LossWeighting)
        return
    model = HardSharing(3)
    losses, _ = model()
    with pytest.raises(ValueError, match="shared_parameters|shared_representation"):
        method.backward(losses)


@pytest.mark.parametrize("name", NAMES)
def test_copies_and_pickles_train_on(name):
    import pickle

    method = build(name, 3)
    train(method, HardSharing(3), steps=1)
    for clone in (copy.deepcopy(method), pickle.loads(pickle.dumps(method))):
        assert repr(clone) == repr(method)
        train(clone, HardSharing(3), steps=1)
