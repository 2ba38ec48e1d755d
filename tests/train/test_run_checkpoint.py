"""RunCheckpoint: a run's objects and state saved and restored exactly, alone (no trainer)."""

import pytest
import torch
from helpers.training import identical
from torch import nn

from go4align.train.results import Trace
from go4align.train.run_checkpoint import RunCheckpoint
from go4align.train.state import RunState
from go4align.weighting import make

IDENTITY = {"benchmark": "none", "seed": 0}


def objects(seed):
    """A model, optimiser, scheduler, weighting and trace, all with state of their own."""
    torch.manual_seed(seed)
    model = nn.Linear(3, 2)
    weighting = make("go4align", 2, num_groups=2)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    return {
        "model": model,
        "optimizer": optimizer,
        "scheduler": scheduler,
        "weighting": weighting,
        "trace": Trace(10, 2),
    }


def train_a_little(parts, steps=3):
    for step in range(steps):
        losses = parts["model"](torch.randn(4, 3)).pow(2).mean(0)
        parts["optimizer"].zero_grad()
        parts["weighting"].backward(losses)
        parts["optimizer"].step()
        parts["scheduler"].step()
        parts["trace"].record(step * 10, parts["weighting"].diagnostics)


def test_a_restored_run_continues_exactly(tmp_path):
    parts = objects(0)
    train_a_little(parts)
    state = RunState.start(2, torch.Generator().manual_seed(0))
    state.count_step(torch.tensor([1.0, 2.0]), skipped=False)
    RunCheckpoint(tmp_path, IDENTITY, **parts).save(state, step_times=[[12, 1.5, 1.25]], peak_memory_mb=3.0)
    then = torch.rand(3)  # the global generators are restored to where they were at the save

    fresh = objects(1)
    restored, step_times = RunCheckpoint(tmp_path, IDENTITY, **fresh).restore()
    assert torch.equal(torch.rand(3), then)
    assert step_times == [[12, 1.5, 1.25]] and restored.previous_peak_mb == 3.0
    assert restored.global_step == 1 and restored.loss_sums.tolist() == [1.0, 2.0]
    for name in ("model", "optimizer", "scheduler", "weighting", "trace"):
        assert identical(fresh[name].state_dict(), parts[name].state_dict()), name
    torch.manual_seed(5)
    train_a_little(parts)
    torch.manual_seed(5)
    train_a_little(fresh)
    assert identical(fresh["model"].state_dict(), parts["model"].state_dict())
    assert identical(fresh["weighting"].state_dict(), parts["weighting"].state_dict())


def test_another_runs_checkpoint_is_refused(tmp_path):
    parts = objects(0)
    RunCheckpoint(tmp_path, IDENTITY, **parts).save(
        RunState.start(2, torch.Generator()), step_times=[], peak_memory_mb=None
    )
    with pytest.raises(ValueError, match=r"written by a different run \(differs in \['seed'\]"):
        RunCheckpoint(tmp_path, {**IDENTITY, "seed": 1}, **objects(0)).restore()


def test_only_the_main_process_writes(tmp_path):
    checkpoint = RunCheckpoint(tmp_path, IDENTITY, **objects(0), main_process=False)
    checkpoint.save(RunState.start(2, torch.Generator()), step_times=[], peak_memory_mb=None)
    assert not checkpoint.exists() and not any(tmp_path.iterdir())
