"""Every kind of method under DDP (2 processes, gloo): weights, state and parameters identical on
both ranks, and equal to one process taking the same steps on the whole global batches."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import ddp_worker
from helpers.methods import METHODS, option_id

TESTS = Path(__file__).resolve().parents[1]
SRC = TESTS.parent / "src"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ddp")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), str(TESTS)]),
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(free_port()),
        "WORLD_SIZE": "2",
        "OMP_NUM_THREADS": "1",
    }
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "helpers.ddp_worker", str(folder / f"rank{r}.pt")],
            env={**env, "RANK": str(r), "LOCAL_RANK": str(r)},
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in range(2)
    ]
    try:
        errors = [p.communicate(timeout=120)[1] for p in processes]
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
    assert all(p.returncode == 0 for p in processes), errors
    return [torch.load(folder / f"rank{r}.pt") for r in range(2)]


def assert_same(a, b, exact: bool):
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            assert_same(a[key], b[key], exact)
    elif isinstance(a, list):
        for x, y in zip(a, b, strict=True):
            assert_same(x, y, exact)
    elif a is None:
        assert b is None
    elif exact:
        assert torch.equal(a, b)
    else:
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_the_table_runs_both_kinds_of_method_and_both_targets_under_ddp():
    infos = [info for info in METHODS if info.ddp is not None]
    assert {info.gradient_oriented for info in infos} == {False, True}
    assert {info.ddp.get("target", "parameters") for info in infos if info.gradient_oriented} == {
        "parameters",
        "representation",
    }


@pytest.mark.slow  # two processes
@pytest.mark.parametrize("label, options", ddp_worker.CASES, ids=[option_id(*case) for case in ddp_worker.CASES])
def test_ranks_agree_and_match_one_process(ranks, label, options):
    first, second = ranks[0][label], ranks[1][label]
    assert_same(first, second, exact=True)
    single = ddp_worker.train(label, options)
    assert_same(first, single, exact=False)
    # the run moved the model, and the weights are not all equal: the comparison has teeth
    assert not torch.equal(single["model"]["encoder.0.weight"], ddp_worker.Tiny().encoder[0].weight.detach())
