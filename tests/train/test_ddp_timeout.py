"""A stalled rank ends a 2-process job within the process-group timeout, with a clear error."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from go4align.train.placement import DDP_TIMEOUT_S, distributed

SRC = Path(__file__).resolve().parents[2] / "src"
TIMEOUT_S = 5

RANKS = """
import os, signal, sys, time
from pathlib import Path
import torch
torch.set_num_threads(1)
from go4align.benchmarks import get_benchmark
from go4align.train import run_grid
from go4align.train.placement import distributed

out, timeout = Path(sys.argv[1]), float(sys.argv[2])

def stall(info):
    if os.environ["RANK"] == "1" and info.global_step == 3:
        (out / "stalled").write_text(f"{os.getpid()} {time.time()}")
        os.kill(os.getpid(), signal.SIGSTOP)  # a rank that stops answering, as under a debugger or a swap storm

bench = get_benchmark("synthetic", num_tasks=3, num_groups=2, train_size=240, val_size=30, test_size=30)
try:
    with distributed("cpu", timeout=timeout):
        run_grid(bench.with_protocol(epochs=2, batch_size=40), ["ls"], [0], out / "grid", callbacks=[stall],
                 progress=False)
except TimeoutError as error:
    print(f"ended at {time.time()}: {error}", file=sys.stderr, flush=True)
    raise SystemExit(3)
"""


@pytest.mark.slow
def test_a_stopped_rank_ends_the_job_within_the_timeout(tmp_path):
    script = tmp_path / "ranks.py"
    script.write_text(RANKS)
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        str(script), str(tmp_path), str(TIMEOUT_S),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    try:
        # gloo's own default would wait 30 minutes: ending at all within this limit shows ours applies
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        finished = time.time()
    finally:
        stalled = tmp_path / "stalled"
        if stalled.exists():  # never leave the stopped rank behind, whatever happened to torchrun
            pid = int(stalled.read_text().split()[0])
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    assert stalled.exists(), done.stderr[-3000:]
    stopped_at = float(stalled.read_text().split()[1])
    ended = re.search(r"ended at ([\d.]+): rank 0 of 2: another rank did not answer within the process-group "
                      rf"timeout of {TIMEOUT_S} s \(stopped, hung or unreachable\), so the job ends; .*--ddp-timeout",
                      done.stderr)  # fmt: skip
    assert done.returncode != 0 and ended, done.stderr[-3000:]
    waited = float(ended.group(1)) - stopped_at
    # rank 0 waited for the timeout, then ended; torchrun then stops the other rank (SIGTERM, which
    # a stopped process holds, and SIGKILL after its fixed 30 s grace)
    assert TIMEOUT_S - 1 <= waited < DDP_TIMEOUT_S, waited
    assert finished - stopped_at < DDP_TIMEOUT_S, finished - stopped_at


@pytest.mark.parametrize("timeout", [0, -1.0, float("inf"), float("nan"), True, "600", None])
def test_the_timeout_must_be_a_positive_number_of_seconds(timeout):
    with pytest.raises(ValueError, match=re.escape(f"timeout must be a positive number of seconds, got {timeout!r}")):
        with distributed("cpu", timeout=timeout):
            pass
