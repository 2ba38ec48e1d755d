"""TrainingStep: one step through the weighting protocol, alone (no trainer, no files)."""

import copy

import pytest
import torch
from helpers.training import identical
from torch import nn

from go4align.benchmarks import HardSharing, task_losses
from go4align.train.placement import Placement
from go4align.train.step import TrainingStep
from go4align.weighting import LS, LossWeighting, NonFiniteLossError, make

LOSSES = task_losses({"a": nn.functional.mse_loss, "b": nn.functional.mse_loss})


def model():
    torch.manual_seed(0)
    return HardSharing(
        nn.Sequential(nn.Linear(3, 4), nn.Tanh()),
        {task: nn.Sequential(nn.Linear(4, 1), nn.Flatten(0)) for task in ("a", "b")},
    )


def batch(scale=1.0):
    x = torch.randn(8, 3, generator=torch.Generator().manual_seed(1))
    return x, {"a": scale * x.sum(1), "b": x[:, 0]}


def step_of(net, weighting, **options):
    optimizer = torch.optim.SGD(list(net.parameters()) + list(weighting.parameters()), lr=0.1)
    return TrainingStep(net, weighting, optimizer, LOSSES, Placement("cpu"), **options)


def test_a_step_is_the_loop_a_user_writes():
    ours, theirs = model(), model()
    losses, skipped = step_of(ours, LS(2))(batch(), 0)
    optimizer = torch.optim.SGD(theirs.parameters(), lr=0.1)
    inputs, targets = batch()
    expected = LOSSES(theirs(inputs), targets)
    expected.sum().backward()
    optimizer.step()
    assert not skipped and not losses.requires_grad and torch.equal(losses, expected.detach())
    assert all(torch.equal(p, q) for p, q in zip(ours.parameters(), theirs.parameters()))


class Recorder(LossWeighting):
    """LS that records what the step hands it."""

    def __init__(self):
        super().__init__(2)
        self.seen = {}

    def weigh(self, losses):
        weights = torch.ones_like(losses)
        self.record(losses=losses, weights=weights)
        return weights

    def backward(self, losses, *, shared_parameters=None, shared_representation=None, retain_graph=False):
        self.seen.update(shared=shared_parameters, representation=shared_representation, losses=losses.detach())
        return super().backward(losses)

    def after_step(self, closure=None):
        self.seen["after"] = closure()


def test_the_weighting_gets_the_shared_parts_and_a_closure_of_the_same_batch_after_the_step():
    net, weighting = model(), Recorder()
    net.eval()  # the step puts it back in train mode
    step_of(net, weighting)(batch(), 0)
    seen = weighting.seen
    assert net.training
    assert [id(p) for p in seen["shared"]] == [id(p) for p in net.shared_parameters()]
    assert seen["representation"].shape == (8, 4)
    inputs, targets = batch()
    with torch.no_grad():
        assert torch.equal(seen["after"], LOSSES(net(inputs), targets))  # the updated model, same batch
    assert not seen["after"].requires_grad and not torch.equal(seen["after"], seen["losses"])


@pytest.mark.parametrize("validate", [True, False])
def test_a_non_finite_loss_raises_before_anything_changes(validate):
    net, weighting = model(), make("go4align", 2, num_groups=2, validate=validate)
    before, state = copy.deepcopy(net.state_dict()), copy.deepcopy(weighting.state_dict())
    with pytest.raises(NonFiniteLossError) as error:
        step_of(net, weighting)(batch(scale=float("nan")), 41)
    assert error.value.tasks == [0] and (validate or error.value.step == 41)
    assert identical(net.state_dict(), before)
    assert identical(weighting.state_dict(), state)


def test_skip_drops_the_step_and_leaves_no_gradient():
    net, weighting = model(), make("go4align", 2, num_groups=2)
    before = copy.deepcopy(net.state_dict())
    step = step_of(net, weighting, nonfinite="skip")
    losses, skipped = step(batch(scale=float("inf")), 0)
    assert skipped and not torch.isfinite(losses).all()
    assert identical(net.state_dict(), before)
    assert all(p.grad is None for p in net.parameters())
    _, skipped = step(batch(), 1)  # the next finite step trains
    assert not skipped and not torch.equal(net.state_dict()["encoder.0.weight"], before["encoder.0.weight"])


def test_an_unknown_policy_is_refused():
    with pytest.raises(ValueError, match=r"nonfinite must be one of \('raise', 'skip'\), got 'ignore'"):
        step_of(model(), LS(2), nonfinite="ignore")
