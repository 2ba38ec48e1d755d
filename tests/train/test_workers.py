"""--workers N: N runs at once on one machine, one device each, the same results as one process;
a killed worker's run resumes from its checkpoint."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers.training import comparable

from go4align.benchmarks import get_benchmark
from go4align.lock_file import RUN_LOCK
from go4align.train import run_dir_of, run_grid
from go4align.train.launch import worker_devices, worker_threads

ROOT = Path(__file__).resolve().parents[2]


def test_each_worker_gets_its_own_device():
    assert worker_devices("cpu", 3, 0) == ["cpu"] * 3
    assert worker_devices("cuda", 2, 4) == ["cuda:0", "cuda:1"]
    assert worker_devices("cuda:1", 1, 4) == ["cuda:1"]  # one worker: the device as given
    with pytest.raises(ValueError, match=r"--workers 2 needs 2 CUDA devices, this machine has 1"):
        worker_devices("cuda", 2, 1)
    with pytest.raises(ValueError, match=r"use --device cuda .* not 'cuda:1'"):
        worker_devices("cuda:1", 2, 4)


def test_the_threads_are_split_between_workers():
    assert [worker_threads(threads, 2) for threads in (1, 2, 5, 8)] == [1, 1, 2, 4]


class Interrupted(Exception):
    pass


def interrupt_at(step):
    def callback(info):
        if info.global_step == step:
            raise Interrupted

    return callback


@pytest.mark.slow
def test_two_workers_give_the_sequential_results_and_resume_a_killed_workers_run(tmp_path):
    methods, seeds = ["ls", "famo", "stl"], [0, 1]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        benchmark = get_benchmark("toy", steps_per_epoch=20).with_protocol(epochs=2)
        run_grid(benchmark, methods, seeds, tmp_path / "sequential", progress=False)
        # A worker killed in famo seed 0's second epoch: its checkpoint of epoch 1 and its run.lock stay.
        with pytest.raises(Interrupted):
            run_grid(benchmark, ["famo"], [0], tmp_path / "workers", progress=False, callbacks=[interrupt_at(25)])
    finally:
        torch.set_num_threads(threads)
    killed = run_dir_of(tmp_path / "workers", "famo", 0)
    first_epoch = json.loads((killed / "result.json").read_text())["epochs"][0]
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (killed / RUN_LOCK).write_text(json.dumps({"host": socket.gethostname(), "pid": dead.pid, "token": "t"}))

    config = tmp_path / "toy.toml"
    config.write_text('benchmark = "toy"\n[benchmark_options]\nsteps_per_epoch = 20\n')
    argv = ["bench", "--config", str(config), "--methods", ",".join(methods), "--seeds", "0,1", "--epochs", "2"]
    argv += ["--out", str(tmp_path / "workers"), "--workers", "2", "--threads", "2", "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run([sys.executable, "-m", "go4align.cli", *argv], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "worker 1/2: " in done.stderr and "worker 2/2: " in done.stderr

    sequential = sorted(p.relative_to(tmp_path / "sequential") for p in (tmp_path / "sequential").rglob("result.json"))
    assert len(sequential) == 3 * 2 + 2 * 2
    for path in sequential:
        one, other = (json.loads((tmp_path / d / path).read_text()) for d in ("sequential", "workers"))
        assert comparable(one) == comparable(other), path
    resumed = json.loads((killed / "result.json").read_text())
    assert resumed["epochs"][0] == first_epoch  # epoch 1 came from the checkpoint, its time included
    assert resumed["complete"] and not list((tmp_path / "workers").rglob("*.lock"))
    commands = [i["command"] for i in json.loads((tmp_path / "workers" / "grid.json").read_text())["invocations"]]
    assert len(commands) == 2 and commands[1].endswith("--workers 2 --threads 2 --quiet")  # once for both workers
