"""Measure what docs/robustness.md states: runs killed at random moments resume bit-identically,
and damaged or hostile checkpoints are never loaded.

    PYTHONPATH=src python scripts/robustness.py --kills 30 --damage 60

Kills: a child process trains GO4Align (random clustering, so the weighting draws from its own
generator) on the synthetic benchmark with a checkpoint every 3 steps and is sent SIGKILL at a
random moment after its first step; the next child resumes, until one finishes. Every finished
run is compared with an uninterrupted one: parameters, metrics and trace bit for bit.

Damage: checkpoint.pt of a run stopped mid-way is replaced by a random damage (a flipped byte, a
truncation, random bytes, an empty file, another run's checkpoint, a pickle that runs code);
every other time checkpoint.prev.pt is damaged too. A damaged newest file must be refused and
the run must finish from the previous one bit-identically; with both damaged the load must fail
with CheckpointError; the hostile pickle's marker file must never appear.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from go4align.benchmarks import get_benchmark
from go4align.result_file import RESULT_FILE, read_result
from go4align.train import parse_method_spec, train_run
from go4align.train.checkpoint import CheckpointError

METHOD = "go4align:clustering=random"
EVERY = 3
CHILD = """
import sys, torch
torch.set_num_threads(1)
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from robustness import benchmark, METHOD, EVERY
from go4align.train import parse_method_spec, train_run
started = Path(sys.argv[1]) / "started"
def mark(info):
    if not started.exists():
        started.write_text("")
train_run(benchmark(), parse_method_spec(METHOD), 0, sys.argv[1], checkpoint_every=EVERY, callbacks=[mark],
          progress=False)
"""


def benchmark():
    bench = get_benchmark("synthetic", num_tasks=4, num_groups=2, train_size=1200, val_size=60, test_size=60)
    return bench.with_protocol(epochs=3, batch_size=20)


def comparable(result: dict) -> dict:
    drop = ("time_per_epoch_s", "peak_memory_mb", "epochs")
    epochs = [{k: v for k, v in e.items() if k != "time_s"} for e in result["epochs"]]
    return {**{k: v for k, v in result.items() if k not in drop}, "epochs": epochs}


def final_state(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoint.pt", weights_only=True)["model"]


def same(run_dir: Path, reference: Path) -> bool:
    ours, theirs = final_state(run_dir), final_state(reference)
    result = read_result(run_dir / RESULT_FILE)
    expected = read_result(reference / RESULT_FILE)
    return comparable(result) == comparable(expected) and all(torch.equal(ours[k], theirs[k]) for k in theirs)


def kill_trials(count: int, reference: Path, work: Path, rng: random.Random) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path("src").resolve()), os.environ.get("PYTHONPATH", "")])}
    kills = in_write = identical = runs = 0
    run_dir = None
    while kills < count:
        if run_dir is None:
            run_dir, runs = work / f"killed{runs}", runs + 1
        (run_dir / "started").unlink(missing_ok=True)
        run_dir.mkdir(parents=True, exist_ok=True)
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(run_dir), str(Path(__file__).parent)], env=env)
        while not (run_dir / "started").exists() and child.poll() is None:
            time.sleep(0.01)
        time.sleep(rng.uniform(0, 3.0))
        if child.poll() is None:
            child.send_signal(signal.SIGKILL)
            child.wait()
            kills += 1
            in_write += any(p.name.startswith(".") for p in run_dir.iterdir())
            continue
        assert child.returncode == 0, f"the child failed in {run_dir}"
        identical += same(run_dir, reference)
        run_dir = None
    if run_dir is not None:  # finish the last killed run
        train_run(benchmark(), parse_method_spec(METHOD), 0, run_dir, checkpoint_every=EVERY, progress=False)
        identical += same(run_dir, reference)
    return {"kills": kills, "kills_during_a_write": in_write, "runs": runs, "bit_identical_runs": identical}


class Hostile:
    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('code ran')",)


def damage(path: Path, kind: str, rng: random.Random, other: Path, marker: Path) -> None:
    data = bytearray(path.read_bytes())
    if kind == "flipped byte":
        data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    elif kind == "truncated":
        data = data[: rng.randrange(len(data))]
    elif kind == "random bytes":
        data = bytearray(rng.randbytes(rng.randrange(1, 4096)))
    elif kind == "empty":
        data = bytearray()
    elif kind == "another run's":
        data = bytearray((other / "checkpoint.pt").read_bytes())
    elif kind == "code-running pickle":
        torch.save({"model": Hostile(marker), "state": {}}, path)
        return
    path.write_bytes(bytes(data))


KINDS = ["flipped byte", "truncated", "random bytes", "empty", "another run's", "code-running pickle"]


def damage_trials(count: int, reference: Path, work: Path, rng: random.Random) -> dict:
    bench, spec = benchmark(), parse_method_spec(METHOD)
    other = work / "other"
    train_run(bench, parse_method_spec(METHOD), 1, other, progress=False)  # another seed: another run
    marker = work / "marker"
    outcome = {"damaged_files": 0, "refused": 0, "loaded_silently": 0, "fallbacks_bit_identical": 0, "both_refused": 0}
    for trial in range(count):
        run_dir = work / f"damaged{trial}"
        stop = rng.randrange(2 * EVERY + 1, 2 * 60)  # after at least two checkpoints, within two epochs

        def interrupt(info, stop=stop):
            if info.global_step == stop:
                raise KeyboardInterrupt

        try:
            train_run(bench, spec, 0, run_dir, checkpoint_every=EVERY, callbacks=[interrupt], progress=False)
        except KeyboardInterrupt:
            pass
        both = trial % 2 == 1
        for name in ("checkpoint.pt", "checkpoint.prev.pt")[: 1 + both]:
            damage(run_dir / name, rng.choice(KINDS), rng, other, marker)
            outcome["damaged_files"] += 1
        try:
            err = io.StringIO()
            with contextlib.redirect_stderr(err):
                train_run(bench, spec, 0, run_dir, checkpoint_every=EVERY, progress=False)
        except CheckpointError:
            outcome["refused"] += 2
            outcome["both_refused"] += 1
            continue
        if both or "refused" not in err.getvalue():
            outcome["loaded_silently"] += 1 + both
            continue
        outcome["refused"] += 1
        outcome["fallbacks_bit_identical"] += same(run_dir, reference)
    outcome["hostile_code_ran"] = marker.exists()
    return outcome


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=30, help="SIGKILLs to send (default 30)")
    parser.add_argument("--damage", type=int, default=60, help="damaged run directories (default 60)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for option in ("kills", "damage"):
        if getattr(args, option) < 0:
            parser.error(f"--{option} must be >= 0, got {getattr(args, option)}")
    torch.set_num_threads(1)
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        start = time.perf_counter()
        train_run(benchmark(), parse_method_spec(METHOD), 0, work / "reference", progress=False)
        report = {"kills": kill_trials(args.kills, work / "reference", work, rng)}
        report["damage"] = damage_trials(args.damage, work / "reference", work, rng)
        report["seconds"] = round(time.perf_counter() - start)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
