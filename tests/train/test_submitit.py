"""--launcher submitit: the grid as a job array, run here with submitit's local executor."""

import json
import sys
from pathlib import Path

import pytest
import torch
from helpers.training import comparable

from go4align.benchmarks import get_benchmark
from go4align.cli import main
from go4align.train import run_grid
from go4align.train.launch import invocation_argument, submit

pytest.importorskip("submitit")

ROOT = Path(__file__).resolve().parents[2]


def test_without_submitit_the_error_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "submitit", None)
    with pytest.raises(ImportError, match=r"pip install 'go4align\[submitit\]'"):
        submit(["bench"], 1, invocation_argument("go4align bench"), tmp_path, cluster="local")


def test_unknown_job_parameters_are_named(tmp_path):
    with pytest.raises(ValueError, match=r"submitit refuses the job parameters .*'gpus': 2"):
        submit(["bench"], 1, invocation_argument("x"), tmp_path, cluster="local", parameters={"gpus": 2})


def test_a_machine_without_slurm_is_named(tmp_path):
    with pytest.raises(ValueError, match=r"submitit cannot submit to the slurm cluster here"):
        submit(["bench"], 1, invocation_argument("x"), tmp_path, cluster="slurm")


def bench(tmp_path, out, methods, *extra):
    config = tmp_path / "toy.toml"
    config.write_text('benchmark = "toy"\n[benchmark_options]\nsteps_per_epoch = 20\n')
    argv = ["bench", "--config", config, "--methods", methods, "--seeds", "0,1", "--epochs", "2", "--threads", "1"]
    return main([str(a) for a in [*argv, "--out", tmp_path / out, "--quiet", *extra]])


@pytest.mark.slow
def test_a_local_job_array_gives_the_sequential_results(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PYTHONPATH", str(ROOT / "src"))  # the jobs import this checkout
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        benchmark = get_benchmark("toy", steps_per_epoch=20).with_protocol(epochs=2)
        run_grid(benchmark, ["ls", "famo", "stl"], [0, 1], tmp_path / "sequential", progress=False)
    finally:
        torch.set_num_threads(threads)
    launcher = ["--launcher", "submitit", "--cluster", "local", "--jobs", "2", "--timeout-min", "30", "--wait"]
    assert bench(tmp_path, "jobs", "ls,famo,stl", *launcher) == 0
    assert "submitted 2 job(s) to local" in capsys.readouterr().err
    sequential = sorted(p.relative_to(tmp_path / "sequential") for p in (tmp_path / "sequential").rglob("result.json"))
    assert len(sequential) == 3 * 2 + 2 * 2
    for path in sequential:
        one, other = (json.loads((tmp_path / d / path).read_text()) for d in ("sequential", "jobs"))
        assert comparable(one) == comparable(other), path
    grid = json.loads((tmp_path / "jobs" / "grid.json").read_text())
    assert len(grid["invocations"]) == 1 and "--launcher submitit" in grid["invocations"][0]["command"]
    logs = list((tmp_path / "jobs" / "submitit").glob("*_log.err"))
    assert sorted(log.read_text().count("shard") for log in logs) == [1, 1]  # one note per job: its shard


@pytest.mark.slow
def test_a_failed_job_fails_the_command_naming_its_log(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PYTHONPATH", str(ROOT / "src"))
    launcher = ["--launcher", "submitit", "--cluster", "local", "--jobs", "1", "--wait"]
    assert bench(tmp_path, "bad", "go4align:num_groups=3", *launcher) == 1  # 3 groups of 2 tasks: after data loads
    err = capsys.readouterr().err
    assert "(shard 1/1) failed: go4align bench: error: " in err and "num_groups" in err and "_log.err" in err
