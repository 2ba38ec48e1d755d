import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers.training import comparable, make_tiny

from go4align.train import Trainer, parse_method_spec, run_grid, train_run

# Random clustering draws from the weighting's own generator every step; the tiny benchmark's
# dropout and augmentation draw from torch's, numpy's and python's: all must resume exactly.
METHOD = "go4align:clustering=random"
SRC = Path(__file__).resolve().parents[2] / "src"


class Interrupt(Exception):
    pass


def interrupt_at(step: int):
    def callback(info):
        if info.global_step == step:
            raise Interrupt

    return callback


def fit(bench, run_dir, **options):
    trainer = Trainer(bench, parse_method_spec(METHOD), 0, run_dir, progress=False, **options)
    return trainer, trainer.fit()


CHECKPOINT_FILES = ["checkpoint.json", "checkpoint.prev.pt", "checkpoint.pt"]


def saved_state(run_dir):
    """The newest checkpoint's run state, read as any user may read it: tensors only."""
    return torch.load(run_dir / "checkpoint.pt", weights_only=True)["state"]


def same_parameters(a: Trainer, b: Trainer) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values()))


@pytest.fixture
def uninterrupted(tmp_path):
    return fit(make_tiny(), tmp_path / "whole")


@pytest.mark.parametrize("steps", [[5], [7], [16], [5, 13]])
def test_interrupted_run_resumes_bit_identically(uninterrupted, tmp_path, steps):
    # 7 steps per epoch, a checkpoint every 4 steps: 5 resumes mid-epoch from step 4, 7 (the last
    # step of epoch 1, before its epoch-end checkpoint) from step 4 too, 16 from its own checkpoint.
    run_dir = tmp_path / "interrupted"
    for step in steps:
        with pytest.raises(Interrupt):
            fit(make_tiny(), run_dir, checkpoint_every=4, callbacks=[interrupt_at(step)])
        partial = run_dir / "result.json"  # written at each epoch end, so absent before the first
        assert not partial.exists() or not json.loads(partial.read_text())["complete"]
    trainer, result = fit(make_tiny(), run_dir, checkpoint_every=4)
    whole_trainer, whole = uninterrupted
    assert same_parameters(trainer, whole_trainer)
    assert comparable(result) == comparable(whole)
    assert result["metrics"] == whole["metrics"] and result["trace"] == whole["trace"]


def test_a_different_seed_differs(uninterrupted, tmp_path):
    other = Trainer(make_tiny(), parse_method_spec(METHOD), 1, tmp_path, progress=False)
    other.fit()
    assert not same_parameters(other, uninterrupted[0])


def test_rerunning_a_complete_run_changes_nothing(uninterrupted):
    trainer, result = uninterrupted
    again = Trainer(make_tiny(), parse_method_spec(METHOD), 0, trainer.run_dir, progress=False)
    assert again.fit() == result and same_parameters(again, trainer)


def test_interrupted_grid_resumes_to_the_same_results(tmp_path):
    methods, seeds = ["ls", METHOD, "stl"], [0, 1]
    run_grid(make_tiny(), methods, seeds, tmp_path / "whole", progress=False)
    runs = []

    def interrupt_fourth_run(info):
        if info.run_dir not in runs:
            runs.append(info.run_dir)
        if len(runs) == 4 and info.global_step == 9:
            raise Interrupt

    with pytest.raises(Interrupt):
        run_grid(make_tiny(), methods, seeds, tmp_path / "cut", checkpoint_every=3, callbacks=[interrupt_fourth_run])
    assert runs[-1] == tmp_path / "cut" / "runs" / "stl" / "seed0" / "tasks" / "cls"
    run_grid(make_tiny(), methods, seeds, tmp_path / "cut", checkpoint_every=3, progress=False)
    whole = sorted((tmp_path / "whole").rglob("result.json"))
    cut = sorted((tmp_path / "cut").rglob("result.json"))
    assert [p.relative_to(tmp_path / "whole") for p in whole] == [p.relative_to(tmp_path / "cut") for p in cut]
    assert len(whole) == 2 * (2 + 1 + 2)
    for a, b in zip(whole, cut):
        assert comparable(json.loads(a.read_text())) == comparable(json.loads(b.read_text())), a


CHILD = """
import sys, time
import torch
sys.path.insert(0, sys.argv[3])
torch.set_num_threads(1)
from pathlib import Path
from helpers.training import make_tiny
from go4align.train import parse_method_spec, train_run

def hang(info):
    if info.global_step == 10:  # epoch 2, after the checkpoint at step 8
        Path(sys.argv[2]).write_text("mid-epoch")
        time.sleep(600)

method = parse_method_spec(sys.argv[4])
train_run(make_tiny(), method, 0, sys.argv[1], checkpoint_every=4, callbacks=[hang], progress=False)
"""


@pytest.mark.slow
def test_killed_process_resumes_bit_identically(uninterrupted, tmp_path):
    run_dir, marker = tmp_path / "killed", tmp_path / "marker"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    args = [sys.executable, "-c", CHILD, str(run_dir), str(marker), str(Path(__file__).parents[1]), METHOD]
    child = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert child.poll() is None, child.communicate()[1].decode()
            assert time.monotonic() < deadline, "the child never reached step 10"
            time.sleep(0.05)
    finally:
        child.kill()
        child.wait()
    state = saved_state(run_dir)
    assert (state["epoch"], state["step_in_epoch"], state["global_step"]) == (1, 1, 8)
    trainer, result = fit(make_tiny(), run_dir, checkpoint_every=4)
    assert same_parameters(trainer, uninterrupted[0])
    assert comparable(result) == comparable(uninterrupted[1])


def test_resume_on_a_dataset_that_serves_whole_batches(digits, tmp_path):
    # digits' datasets offer get_batch, the other path of the data iteration
    whole = train_run(digits, parse_method_spec(METHOD), 0, tmp_path / "whole", progress=False)
    with pytest.raises(Interrupt):
        train_run(
            digits, parse_method_spec(METHOD), 0, tmp_path / "cut", checkpoint_every=5, callbacks=[interrupt_at(23)]
        )
    resumed = train_run(digits, parse_method_spec(METHOD), 0, tmp_path / "cut", progress=False)
    assert comparable(resumed) == comparable(whole)


def test_train_run_is_the_trainer(uninterrupted, tmp_path):
    result = train_run(make_tiny(), parse_method_spec(METHOD), 0, tmp_path, progress=False)
    assert comparable(result) == comparable(uninterrupted[1])


def test_a_write_that_fails_midway_keeps_the_previous_checkpoint(uninterrupted, tmp_path, monkeypatch):
    """An exception inside the checkpoint write (disk full, a kill signal turned into an
    exception) after half the bytes went out: the previous checkpoint survives intact, no
    temporary file is left, and the run resumes from it to the uninterrupted result."""
    run_dir, real_save, calls = tmp_path / "failed", torch.save, []

    def failing_save(obj, handle, *args, **kwargs):
        calls.append(obj["state"]["global_step"] if isinstance(obj, dict) and "state" in obj else None)
        if calls[-1] == 8:
            handle.write(b"\x80partial checkpoint")
            raise OSError("No space left on device")
        return real_save(obj, handle, *args, **kwargs)

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError, match="No space left"):
        fit(make_tiny(), run_dir, checkpoint_every=4)
    monkeypatch.setattr(torch, "save", real_save)
    assert calls == [4, 7, 8]  # steps 4, the epoch end (7), then the failed one
    assert sorted(p.name for p in run_dir.iterdir()) == CHECKPOINT_FILES + ["result.json"]
    assert saved_state(run_dir)["global_step"] == 7
    trainer, result = fit(make_tiny(), run_dir, checkpoint_every=4)
    assert same_parameters(trainer, uninterrupted[0])
    assert comparable(result) == comparable(uninterrupted[1])


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_partial_files_left_by_killed_writers_are_removed(uninterrupted, tmp_path):
    """A process killed inside a write leaves its partial temporary file behind (the rename
    never happened): a resumed run removes it, keeps a live writer's, and never reads either."""
    run_dir = tmp_path / "killed"
    with pytest.raises(Interrupt):
        fit(make_tiny(), run_dir, checkpoint_every=4, callbacks=[interrupt_at(10)])
    leftovers = [run_dir / f".checkpoint.pt.tmp{dead_pid()}", run_dir / f".result.json.tmp{dead_pid()}"]
    for leftover in leftovers:
        leftover.write_bytes(b"\x80torn")
    alive = run_dir / f".checkpoint.pt.tmp{os.getppid()}"  # a live process's write in progress
    alive.write_bytes(b"\x80busy")
    trainer, result = fit(make_tiny(), run_dir, checkpoint_every=4)
    assert same_parameters(trainer, uninterrupted[0])
    assert comparable(result) == comparable(uninterrupted[1])
    assert not any(leftover.exists() for leftover in leftovers)
    assert alive.read_bytes() == b"\x80busy"
    alive.unlink()
    assert sorted(p.name for p in run_dir.iterdir()) == CHECKPOINT_FILES + ["result.json"]
