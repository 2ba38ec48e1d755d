"""Shared set-up of the benchmark tests."""

import json
import math

import pytest

from go4align.train import run_dir_of, run_grid
from go4align.weighting import available

# One of these is run where the build has it (the baselines add them); LS and GO4Align always.
GRADIENT_METHODS = ("mgda", "pcgrad")


@pytest.fixture(params=["ls", "go4align", "gradient"])
def harness_method(request):
    """A loss-oriented method, GO4Align, and one gradient-oriented method when this build has one."""
    if request.param != "gradient":
        return request.param
    found = [m for m in GRADIENT_METHODS if m in available()]
    if not found:
        pytest.skip(f"this build registers no gradient-oriented method {GRADIENT_METHODS}")
    return found[0]


@pytest.fixture
def train_one_epoch(tmp_path, harness_method):
    """``train(benchmark, higher_is_better)``: one epoch of ``harness_method`` through
    ``go4align.train.run_grid``, then checks that the written result.json is complete, with a
    finite value of every metric of ``higher_is_better`` (names in order) and its direction."""

    def train(benchmark, higher_is_better):
        out = tmp_path / "grid"
        run_grid(benchmark.with_protocol(epochs=1), [harness_method], [0], out, progress=False)
        result = json.loads((run_dir_of(out, harness_method, 0) / "result.json").read_text())
        assert result["complete"] and len(result["epochs"]) == 1
        assert result["benchmark"] == benchmark.name and result["method"] == harness_method
        assert list(result["metrics"]) == list(higher_is_better)
        assert result["directions"] == {m: "higher" if up else "lower" for m, up in higher_is_better.items()}
        assert all(math.isfinite(v) for v in result["metrics"].values()), result["metrics"]
        assert all(math.isfinite(v) for v in result["epochs"][0]["train_losses"].values())
        return result

    return train
