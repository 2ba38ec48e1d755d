"""--shard k/n: the partition of a grid's runs, the locks that let shards share one grid, and two
shards in parallel giving the results of one sequential grid."""

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers.training import comparable, make_tiny
from hypothesis import given
from hypothesis import strategies as st

from go4align.lock_file import GRID_LOCK, RUN_LOCK, read_owner
from go4align.train import run_dir_of, run_grid
from go4align.train.locks import STALE_AFTER_S, FileLock, LockTimeout
from go4align.train.shards import Shard, parse_shard, partition, shard_from_slurm

ROOT = Path(__file__).resolve().parents[2]

labels = st.lists(st.sampled_from(["ls", "famo", "go4align", "mgda", "stl", "uw", "si"]), min_size=1, unique=True)
seeds = st.lists(st.integers(0, 50), min_size=1, max_size=6, unique=True)


# -- the partition ------------------------------------------------------------------------------
@given(labels, seeds, st.integers(1, 6), st.integers(1, 9))
def test_the_shards_cover_every_run_exactly_once(methods, seed_list, tasks, count):
    parts = [partition(methods, seed_list, tasks, Shard(k, count)) for k in range(1, count + 1)]
    everything = {(label, seed) for label in methods for seed in seed_list}
    assert set().union(*parts) == everything
    assert sum(len(part) for part in parts) == len(everything)  # disjoint


@given(labels, seeds, st.integers(1, 6), st.integers(1, 5), st.randoms())
def test_the_partition_ignores_the_order_of_methods_and_seeds(methods, seed_list, tasks, count, rng):
    shuffled_methods, shuffled_seeds = list(methods), list(seed_list)
    rng.shuffle(shuffled_methods)
    rng.shuffle(shuffled_seeds)
    for k in range(1, count + 1):
        assert partition(methods, seed_list, tasks, Shard(k, count)) == partition(
            shuffled_methods, shuffled_seeds, tasks, Shard(k, count)
        )


def test_without_stl_it_is_round_robin_over_the_sorted_runs():
    runs = sorted((label, seed) for label in ("ls", "famo", "go4align") for seed in (0, 1))
    for k in (1, 2, 3, 4):
        assert partition(["ls", "famo", "go4align"], [1, 0], 2, Shard(k, 4)) == set(runs[k - 1 :: 4])


def test_stl_counts_as_one_run_per_task():
    # 3 tasks: each STL run is 3 models; the two STL runs go to different shards, and the six
    # single-model runs fill the shards up to equal work.
    shards = [partition(["ls", "famo", "stl"], [0, 1], 3, Shard(k, 2)) for k in (1, 2)]
    work = [sum(3 if label == "stl" else 1 for label, _ in part) for part in shards]
    assert work == [5, 5] and all(sum(label == "stl" for label, _ in part) == 1 for part in shards)


@pytest.mark.parametrize(
    "text, message",
    [
        ("3/2", r"shard 3/2: k/n needs n >= 1 and 1 <= k <= n \(k is 1-based"),
        ("0/2", r"1 <= k <= n \(k is 1-based: the shards of n = 2 are 1/2 to 2/2\)"),
        ("1/0", r"shard 1/0: k/n needs n >= 1"),
        ("2", r"shard must be k/n .* got '2'"),
        ("a/b", r"got 'a/b'"),
    ],
)
def test_bad_shards_are_named(text, message):
    with pytest.raises(ValueError, match=message):
        parse_shard(text)


def test_auto_reads_a_slurm_array():
    env = {"SLURM_ARRAY_TASK_ID": "7", "SLURM_ARRAY_TASK_MIN": "5", "SLURM_ARRAY_TASK_COUNT": "4"}
    assert parse_shard("auto", env) == Shard(3, 4)
    stepped = {**env, "SLURM_ARRAY_TASK_ID": "9", "SLURM_ARRAY_TASK_STEP": "2"}
    assert shard_from_slurm(stepped) == Shard(3, 4)
    with pytest.raises(ValueError, match="array task 8 is not task MIN \\+ i\\*STEP"):
        shard_from_slurm({**stepped, "SLURM_ARRAY_TASK_ID": "8"})
    with pytest.raises(ValueError, match="SLURM_ARRAY_TASK_COUNT not set"):
        parse_shard("auto", {"SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_MIN": "0"})


# -- the locks ----------------------------------------------------------------------------------
def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def write_owner(path: Path, **owner) -> None:
    owner = {"host": socket.gethostname(), "pid": os.getpid(), "job": None, "token": "theirs", **owner}
    path.write_text(json.dumps(owner))


def test_a_lock_is_taken_once_and_released(tmp_path):
    first, second = FileLock(tmp_path / "a.lock"), FileLock(tmp_path / "a.lock")
    assert first.try_acquire() and read_owner(tmp_path / "a.lock")["pid"] == os.getpid()
    assert not second.try_acquire() and second.holder["token"] == read_owner(tmp_path / "a.lock")["token"]
    first.release()
    assert not (tmp_path / "a.lock").exists() and second.try_acquire()
    second.release()


def test_a_live_owner_on_another_host_keeps_its_lock_until_its_heartbeat_stops(tmp_path):
    path = tmp_path / "a.lock"
    write_owner(path, host="elsewhere", pid=1)
    lock = FileLock(path, stale_after_s=30)
    assert not lock.try_acquire() and lock.holder["host"] == "elsewhere"
    old = time.time() - 31
    os.utime(path, (old, old))  # no heartbeat for 31 s
    assert lock.try_acquire() and read_owner(path)["host"] == socket.gethostname()
    lock.release()


def test_a_dead_owner_on_this_host_loses_its_lock_at_once(tmp_path):
    path = tmp_path / "a.lock"
    write_owner(path, pid=dead_pid())
    lock = FileLock(path)
    assert lock.try_acquire()
    lock.release()


def test_a_requeued_slurm_job_takes_over_its_earlier_attempts_lock(tmp_path, monkeypatch):
    path = tmp_path / "a.lock"
    monkeypatch.setenv("SLURM_JOB_ID", "123")
    monkeypatch.setenv("SLURM_PROCID", "0")
    write_owner(path, host="node1", pid=99, job="123.0")
    assert FileLock(path).try_acquire()
    path.unlink()
    write_owner(path, host="node1", pid=99, job="124.0")  # another job: alive as far as we know
    assert not FileLock(path).try_acquire()


def test_a_broken_lock_taken_meanwhile_by_another_is_given_back(tmp_path):
    path = tmp_path / "a.lock"
    write_owner(path, pid=dead_pid(), token="new")  # what a third process wrote after our judgement
    lock = FileLock(path)
    lock._break({"token": "the stale one we judged"})
    assert read_owner(path)["token"] == "new" and not list(tmp_path.glob("*.stale*"))


def test_the_heartbeat_refreshes_the_lock_and_notices_its_loss(tmp_path):
    path = tmp_path / "a.lock"
    lock = FileLock(path, stale_after_s=5, heartbeat_s=0.05)
    assert lock.try_acquire()
    old = time.time() - 4
    os.utime(path, (old, old))
    time.sleep(0.3)
    assert time.time() - path.stat().st_mtime < 1
    write_owner(path, token="usurper")
    time.sleep(0.3)
    lock.release()
    assert lock.lost and read_owner(path)["token"] == "usurper"  # the new owner's lock is left alone


def test_waiting_for_a_lock_held_too_long_names_its_owner(tmp_path):
    path = tmp_path / "a.lock"
    write_owner(path, host="node9", pid=5)
    with pytest.raises(LockTimeout, match=r"held by node9 pid 5 for over 0.1 s; if that process is gone, delete"):
        FileLock(path).acquire(wait_s=0.1)


# -- grids shared by shards ---------------------------------------------------------------------
def test_shards_train_each_run_once_and_keep_each_others_grid_json(tmp_path):
    methods, seeds = ["ls", "famo", "stl"], [0, 1]
    first = run_grid(make_tiny(epochs=1), methods, seeds, tmp_path, progress=False, shard="1/2", command="go4align a")
    second = run_grid(make_tiny(epochs=1), methods, seeds, tmp_path, progress=False, shard=Shard(2, 2), command="b")
    assert not set(first) & set(second) and set(first) | set(second) == {(m, s) for m in methods for s in seeds}
    grid = json.loads((tmp_path / "grid.json").read_text())
    assert grid["methods"] == methods and grid["seeds"] == seeds
    assert [i["command"] for i in grid["invocations"]] == ["go4align a", "b"]
    assert not list(tmp_path.rglob("*.lock"))  # every lock released


def test_a_run_held_by_a_live_process_is_left_to_it(tmp_path, capsys):
    held = run_dir_of(tmp_path, "ls", 0)
    held.mkdir(parents=True)
    write_owner(held / RUN_LOCK, host="node3", pid=77)
    results = run_grid(make_tiny(epochs=1), ["ls"], [0, 1], tmp_path, progress=False, wait_for_others=False)
    assert set(results) == {("ls", 1)} and not (held / "result.json").exists()
    assert "ls seed 0 left to the process training it: node3 pid 77 holds" in capsys.readouterr().err


def test_a_shard_waits_for_a_held_run_and_takes_it_over_when_its_owner_dies(tmp_path, capsys):
    held = run_dir_of(tmp_path, "ls", 0)
    held.mkdir(parents=True)
    write_owner(held / RUN_LOCK, host="node3", pid=77)
    beat = time.time() - STALE_AFTER_S + 1  # its last heartbeat: stale in a second
    os.utime(held / RUN_LOCK, (beat, beat))
    results = run_grid(make_tiny(epochs=1), ["ls"], [0, 1], tmp_path, progress=False, poll_s=0.05)
    assert set(results) == {("ls", 0), ("ls", 1)} and results["ls", 0]["complete"]
    assert "ls seed 0 is being trained by another process (node3 pid 77 holds" in capsys.readouterr().err
    assert not (held / RUN_LOCK).exists()


def test_invocations_with_one_id_are_recorded_once(tmp_path):
    for shard in ("1/2", "2/2"):
        run_grid(make_tiny(epochs=1), ["ls"], [0, 1], tmp_path, progress=False, shard=shard, invocation_id="x")
    assert len(json.loads((tmp_path / "grid.json").read_text())["invocations"]) == 1
    assert not (tmp_path / GRID_LOCK).exists()


@pytest.mark.slow
def test_two_shards_in_parallel_give_the_sequential_grids_results(tmp_path):
    config = tmp_path / "toy.toml"
    config.write_text('benchmark = "toy"\n[benchmark_options]\nsteps_per_epoch = 20\n')
    argv = ["bench", "--config", str(config), "--methods", "ls,famo,go4align:num_groups=2,stl", "--seeds", "0,1"]
    argv += ["--epochs", "2", "--quiet", "--threads", "1"]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}

    def bench(*extra):
        return subprocess.Popen([sys.executable, "-m", "go4align.cli", *argv, *extra], env=env, cwd=tmp_path)

    shards = [bench("--out", "sharded", "--shard", f"{k}/2") for k in (1, 2)]
    assert bench("--out", "sequential").wait() == 0
    assert [process.wait() for process in shards] == [0, 0]
    sequential = sorted(p.relative_to(tmp_path / "sequential") for p in (tmp_path / "sequential").rglob("result.json"))
    sharded = sorted(p.relative_to(tmp_path / "sharded") for p in (tmp_path / "sharded").rglob("result.json"))
    assert sharded == sequential and len(sequential) == 4 * 2 + 2 * 2  # STL: merged + one per task
    for path in sequential:
        one, other = (json.loads((tmp_path / d / path).read_text()) for d in ("sequential", "sharded"))
        assert comparable(one) == comparable(other), path
    commands = [i["command"] for i in json.loads((tmp_path / "sharded" / "grid.json").read_text())["invocations"]]
    assert sorted(c.rsplit(" ", 1)[1] for c in commands) == ["1/2", "2/2"]


@pytest.mark.parametrize("poll_s", [0, -1.0, float("nan"), float("inf"), True, "10"])
def test_a_poll_interval_that_is_not_a_positive_number_of_seconds_is_refused(tmp_path, poll_s):
    with pytest.raises(ValueError, match=re.escape(f"poll_s must be a positive number of seconds, got {poll_s!r}")):
        run_grid(make_tiny(epochs=1), ["ls"], [0], tmp_path, progress=False, poll_s=poll_s)
    assert not list(tmp_path.iterdir())  # refused before anything was written
