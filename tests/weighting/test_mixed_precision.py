"""Mixed precision: autocast (bfloat16 on the CPU, float16 on CUDA) with a GradScaler, on a model
with LayerNorm and BatchNorm, through ``backward(grad_scaler=...)`` of every method of
``helpers.methods`` with each of its option sets."""

from __future__ import annotations

import copy

import pytest
import torch
from helpers.methods import DEFAULTS, OPTION_SETS
from torch import nn

TASKS = 3


class Normed(nn.Module):
    """Shared trunk with LayerNorm and BatchNorm (float32 parameters), one head per task."""

    def __init__(self):
        super().__init__()
        with torch.random.fork_rng():
            torch.manual_seed(0)
            self.trunk = nn.Sequential(nn.Linear(5, 8), nn.LayerNorm(8), nn.ReLU(), nn.Linear(8, 8), nn.BatchNorm1d(8))
            self.heads = nn.ModuleList(nn.Linear(8, 1) for _ in range(TASKS))
            self.x = torch.randn(16, 5)
            self.y = torch.randn(16, TASKS) * torch.tensor([1.0, 10.0, 0.1])

    def losses(self, device_type: str, dtype: torch.dtype):
        with torch.autocast(device_type, dtype=dtype):
            z = self.trunk(self.x.to(device_type))
            predictions = torch.cat([head(z) for head in self.heads], 1)
            losses = ((predictions.float() - self.y.to(device_type)) ** 2).mean(0)
        return losses, z


def step(weighting, device: str, dtype: torch.dtype):
    model = Normed().to(device)
    weighting = weighting.to(device)
    losses, z = model.losses(device, dtype)
    weights = weighting.backward(losses, shared_parameters=list(model.trunk.parameters()), shared_representation=z)
    return model, weighting, weights


@pytest.mark.parametrize("info, options", OPTION_SETS)
def test_bfloat16_autocast_with_a_scaler_matches_the_unscaled_gradients(info, options):
    reference, _, plain = step(info.make_or_skip(TASKS, **options), "cpu", torch.bfloat16)
    model = Normed()
    weighting = info.make_or_skip(TASKS, **options)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    losses, z = model.losses("cpu", torch.bfloat16)
    weights = weighting.backward(
        losses, shared_parameters=list(model.trunk.parameters()), shared_representation=z, grad_scaler=scaler
    )
    if weights is not None:
        assert weights.dtype in (torch.float32, torch.float64) and torch.isfinite(weights).all()
        torch.testing.assert_close(weights, plain)
    optimizer = torch.optim.SGD([*model.parameters(), *weighting.parameters()], lr=0.1)
    scaler.unscale_(optimizer)
    for (key, ours), theirs in zip(model.named_parameters(), reference.parameters()):
        assert ours.grad is not None and torch.isfinite(ours.grad).all(), key
        torch.testing.assert_close(ours.grad, theirs.grad, rtol=1e-4, atol=1e-6, msg=f"{info.label}: {key}")
    before = copy.deepcopy(model.state_dict())
    scaler.step(optimizer)
    scaler.update()
    assert scaler.get_scale() == 2.0**10  # no overflow: the step was taken, the scale kept
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())


# methods whose scaled gradients overflow float32 at a scale of 2**127 (those of a log objective,
# FAMO's, do not: they are divided by the losses)
OVERFLOWING = [case for case in DEFAULTS if case.id in ("ls", "uw", "mgda", "imtl-g", "graddrop", "nash-mtl")]


@pytest.mark.parametrize("info, options", OVERFLOWING)
def test_an_overflow_skips_the_step_and_lowers_the_scale(info, options):
    model = Normed()
    weighting = info.make_or_skip(TASKS, **options)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**127)  # scaled gradients overflow float32
    optimizer = torch.optim.SGD([*model.parameters(), *weighting.parameters()], lr=0.1)
    losses, z = model.losses("cpu", torch.bfloat16)
    weighting.backward(
        losses, shared_parameters=list(model.trunk.parameters()), shared_representation=z, grad_scaler=scaler
    )
    before = copy.deepcopy(model.state_dict())
    scaler.step(optimizer)
    scaler.update()
    assert scaler.get_scale() < 2.0**127
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="float16 autocast needs CUDA")
@pytest.mark.parametrize("info, options", OPTION_SETS)
def test_float16_autocast_on_cuda_gives_finite_float32_weights(info, options):
    model = Normed().cuda()
    model.x, model.y = model.x.cuda(), model.y.cuda()
    weighting = info.make_or_skip(TASKS, **options).cuda()
    scaler = torch.amp.GradScaler("cuda")
    optimizer = torch.optim.SGD([*model.parameters(), *weighting.parameters()], lr=0.1)
    for _ in range(2):
        optimizer.zero_grad()
        losses, z = model.losses("cuda", torch.float16)
        weights = weighting.backward(
            losses, shared_parameters=list(model.trunk.parameters()), shared_representation=z, grad_scaler=scaler
        )
        if weights is not None:
            assert weights.dtype in (torch.float32, torch.float64) and torch.isfinite(weights).all()
        scaler.step(optimizer)
        scaler.update()
        weighting.after_step(lambda: model.losses("cuda", torch.float16)[0].detach())
    assert all(torch.isfinite(p).all() for p in model.parameters())
