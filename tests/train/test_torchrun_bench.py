"""``go4align bench`` under torchrun, 2 CPU processes (gloo): the same results as one process,
written once, and a clean exit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from go4align.cli import build_benchmark, load_config
from go4align.train import run_grid

SRC = Path(__file__).resolve().parents[2] / "src"
METHODS = ["ls", "mgda", "famo"]  # loss-oriented, gradient-oriented, and one with after_step
CONFIG = """
benchmark = "synthetic"
[benchmark_options]
num_tasks = 3
num_groups = 2
train_size = 120
val_size = 30
test_size = 30
[protocol]
epochs = 2
batch_size = 40
"""


@pytest.mark.slow
def test_torchrun_bench_matches_one_process(tmp_path):
    config = tmp_path / "tiny.toml"
    config.write_text(CONFIG)
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "go4align.cli", "bench", "--config", str(config), "--methods", ",".join(METHODS),
        "--out", str(tmp_path / "ddp"), "--threads", "1", "--quiet",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("results in") == 1  # rank 0 alone prints

    single = run_grid(build_benchmark(None, load_config(config)), METHODS, [0], tmp_path / "one", progress=False)
    for method in METHODS:
        result = json.loads((tmp_path / "ddp" / "runs" / method / "seed0" / "result.json").read_text())
        alone = single[method, 0]
        assert result["complete"]
        for name, value in alone["metrics"].items():
            assert result["metrics"][name] == pytest.approx(value, rel=1e-4), (method, name)
        for ours, theirs in zip(result["epochs"], alone["epochs"], strict=True):
            assert ours["train_losses"] == pytest.approx(theirs["train_losses"], rel=1e-4)
