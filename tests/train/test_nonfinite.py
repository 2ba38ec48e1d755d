"""The trainer's policy for NaN/inf losses: raise naming the task and the step, or skip the step
and count it; never a NaN model."""

from __future__ import annotations

import math

import pytest
import torch
from helpers.training import NoisyItems, make_tiny

from go4align.cli import parser
from go4align.train import Trainer, parse_method_spec
from go4align.weighting import NonFiniteLossError

POISONED = 9  # the sample whose regression target is NaN: in one batch of every epoch


class Poisoned(NoisyItems):
    def __getitem__(self, i):
        x, y = super().__getitem__(i)
        return x, ({**y, "reg": torch.tensor(math.nan)} if i == POISONED else y)


def trainer(tmp_path, method: str, **options) -> Trainer:
    bench = make_tiny(train=Poisoned(40, 1, True))
    return Trainer(bench, parse_method_spec(method), 0, tmp_path, progress=False, **options)


def finite_model(run: Trainer) -> bool:
    return all(torch.isfinite(p).all() for p in run.model.parameters())


@pytest.mark.parametrize("method", ["ls", "mgda", "famo", "uw:validate=false"])
def test_raise_names_the_task_and_the_step(tmp_path, method):
    run = trainer(tmp_path, method)
    with pytest.raises(NonFiniteLossError, match=r"task\(s\) \['reg'\] at step \d+") as caught:
        run.fit()
    assert caught.value.tasks == [0] and caught.value.step < 7  # within the first epoch
    assert finite_model(run)


@pytest.mark.parametrize("method", ["ls", "mgda", "famo", "uw:validate=false"])
def test_skip_drops_the_steps_and_reports_them(tmp_path, method):
    run = trainer(tmp_path, method, nonfinite="skip")
    result = run.fit()
    assert result["complete"] and result["nonfinite"] == "skip"
    assert result["skipped_steps"] == 3  # one poisoned batch in each of the 3 epochs
    assert finite_model(run)
    assert all(math.isfinite(v) for e in result["epochs"] for v in e["train_losses"].values())
    assert all(math.isfinite(v) for v in result["metrics"].values())


def test_the_policy_is_checked_and_on_the_command_line(tmp_path):
    with pytest.raises(ValueError, match="nonfinite must be one of"):
        trainer(tmp_path, "ls", nonfinite="ignore")
    args = parser().parse_args(["bench", "--benchmark", "toy", "--methods", "ls", "--out", "x", "--nonfinite", "skip"])
    assert args.nonfinite == "skip"
