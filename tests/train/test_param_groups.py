"""The optimiser's parameter groups: the weighting's own learning rate, or its parameters frozen."""

import pytest
import torch
from helpers.training import make_tiny
from torch import nn

from go4align.benchmarks import Protocol
from go4align.train import Trainer, param_groups, parse_method_spec
from go4align.weighting import UW, Grouped, make


def test_uw_trains_in_its_own_group_at_its_own_lr():
    model = nn.Linear(3, 2)
    for weighting, owner in [(UW(2), None), (UW(2, lr=0.1), None), (Grouped(UW(3), 2), "method")]:
        inner = getattr(weighting, owner) if owner else weighting
        groups = param_groups(model, weighting)
        assert [len(g["params"]) for g in groups] == [2, 1]
        assert groups[1]["params"][0] is inner.log_variance and groups[1]["lr"] == inner.lr
        assert "lr" not in groups[0]  # the model's: the protocol's lr


def test_weightings_without_parameters_add_no_group():
    for name in ("ls", "famo", "go4align"):  # FAMO's logits have their own optimiser, not a parameter
        assert len(param_groups(nn.Linear(3, 2), make(name, 2))) == 1


def test_frozen_uw_is_ls_with_halved_losses():
    model, weighting = nn.Linear(3, 2), UW(2)
    groups = param_groups(model, weighting, train_weighting=False)
    assert len(groups) == 1 and not weighting.log_variance.requires_grad
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(0))
    weighting.backward((model(x) ** 2).mean(0))
    halved = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    (0.5 * (model(x) ** 2).mean(0).sum()).backward()
    for got, expected in zip(halved, (p.grad for p in model.parameters())):
        torch.testing.assert_close(got, expected)
    assert weighting.log_variance.grad is None


@pytest.mark.parametrize("train", [True, False])
def test_the_protocol_flag_decides_whether_the_trainer_trains_uw(tmp_path, train):
    bench = make_tiny(epochs=1, train_weighting_parameters=train)
    trainer = Trainer(bench, parse_method_spec("uw"), 0, tmp_path, progress=False)
    trainer.fit()
    groups, s = trainer.optimizer.param_groups, trainer.weighting.log_variance.detach()
    if train:
        assert len(groups) == 2 and groups[1]["lr"] == 0.025 and groups[0]["lr"] == bench.protocol.lr
        assert not torch.equal(s, torch.zeros(2))
    else:
        assert len(groups) == 1 and torch.equal(s, torch.zeros(2))


def test_the_flag_must_be_a_bool():
    with pytest.raises(ValueError, match="train_weighting_parameters"):
        Protocol(epochs=1, batch_size=1, lr=1.0, train_weighting_parameters="no")
