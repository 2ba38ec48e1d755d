"""Checkpoints that cannot run code, refuse damaged files and fall back to the previous good one."""

import json
import os
import random
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.training import comparable, make_tiny

from go4align.train import Trainer, parse_method_spec
from go4align.train.checkpoint import CheckpointError, CheckpointStore, rng_state, set_rng_state

METHOD = "go4align:clustering=random"
SRC = Path(__file__).resolve().parents[2] / "src"


class Interrupt(Exception):
    pass


def fit(run_dir, *, stop_at=None, **options):
    def stop(info):
        if info.global_step == stop_at:
            raise Interrupt

    trainer = Trainer(make_tiny(), parse_method_spec(METHOD), 0, run_dir, progress=False, callbacks=[stop], **options)
    return trainer, trainer.fit()


def parameters(trainer):
    return [t.clone() for t in trainer.model.state_dict().values()]


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    trainer, result = fit(tmp_path_factory.mktemp("whole") / "run")
    return parameters(trainer), comparable(result)


@pytest.fixture
def interrupted(tmp_path):
    """A run stopped at step 10: checkpoint.pt holds step 8, checkpoint.prev.pt step 7."""
    run_dir = tmp_path / "run"
    with pytest.raises(Interrupt):
        fit(run_dir, checkpoint_every=4, stop_at=10)
    return run_dir


def assert_finishes_like_whole(run_dir, whole):
    trainer, result = fit(run_dir, checkpoint_every=4)
    assert all(torch.equal(a, b) for a, b in zip(parameters(trainer), whole[0], strict=True))
    assert comparable(result) == whole[1]


class Hostile:
    """Unpickling it runs code: it writes a marker file."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('code ran')",)


def plant(path: Path, marker: Path) -> None:
    torch.save({"model": Hostile(marker), "state": {}}, path)


def record(run_dir: Path) -> dict:
    return json.loads((run_dir / "checkpoint.json").read_text())


def test_the_files_of_a_checkpointed_run(interrupted):
    files = sorted(p.name for p in interrupted.iterdir())
    assert files == ["checkpoint.json", "checkpoint.prev.pt", "checkpoint.pt", "result.json"]  # no temporaries
    entries = record(interrupted)["checkpoints"]
    assert [(e["file"], e["global_step"]) for e in entries] == [("checkpoint.pt", 8), ("checkpoint.prev.pt", 7)]
    for name in ("checkpoint.pt", "checkpoint.prev.pt"):  # plain torch files that anyone can read safely
        assert isinstance(torch.load(interrupted / name, weights_only=True)["model"], dict)


@pytest.mark.parametrize("with_record", [False, True])
def test_a_pickle_that_runs_code_is_refused_without_running_it(interrupted, tmp_path, whole, capsys, with_record):
    """Someone sends a run directory whose checkpoint.pt runs code when unpickled; with its
    checksum forged into checkpoint.json too, the weights-only load still refuses it."""
    marker = tmp_path / "marker"
    newest = interrupted / "checkpoint.pt"
    plant(newest, marker)
    if with_record:
        forged = record(interrupted)
        forged["checkpoints"][0]["sha256"] = __import__("hashlib").sha256(newest.read_bytes()).hexdigest()
        (interrupted / "checkpoint.json").write_text(json.dumps(forged))
        reason = "not a tensors-only checkpoint"
    else:
        reason = "its sha256 is not in checkpoint.json"
    assert_finishes_like_whole(interrupted, whole)  # from checkpoint.prev.pt
    assert not marker.exists()
    err = capsys.readouterr().err
    assert f"refused {newest} ({reason}" in err and "resuming from" in err and "checkpoint.prev.pt" in err
    # the planted file really was hostile: a pickle load runs it
    plant(tmp_path / "again.pt", marker)
    torch.load(tmp_path / "again.pt", weights_only=False)
    assert marker.read_text() == "code ran"


def test_hostile_files_everywhere_are_refused_with_what_to_do(interrupted, tmp_path):
    marker = tmp_path / "marker"
    for name in ("checkpoint.pt", "checkpoint.prev.pt"):
        plant(interrupted / name, marker)
    with pytest.raises(CheckpointError) as caught:
        fit(interrupted)
    message = str(caught.value)
    assert "\n" not in message and f"no usable checkpoint in {interrupted}" in message
    assert f"{interrupted / 'checkpoint.pt'}: its sha256 is not in checkpoint.json" in message
    assert f"{interrupted / 'checkpoint.prev.pt'}: its sha256" in message
    assert "delete checkpoint.pt, checkpoint.prev.pt, checkpoint.json there" in message
    assert not marker.exists()


def flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def empty(path: Path) -> None:
    path.write_bytes(b"")


def another_runs(path: Path) -> None:
    """A valid checkpoint of a run with another seed, copied over this one."""
    other = path.parent.parent / "other"
    Trainer(make_tiny(epochs=1), parse_method_spec(METHOD), 1, other, progress=False).fit()
    path.write_bytes((other / "checkpoint.pt").read_bytes())


def delete(path: Path) -> None:
    path.unlink()


DAMAGE = [flip_a_byte, truncate, empty, another_runs]


@pytest.mark.parametrize("damage", DAMAGE + [delete], ids=lambda f: f.__name__)
def test_a_damaged_newest_checkpoint_falls_back_to_the_previous(interrupted, whole, capsys, damage):
    damage(interrupted / "checkpoint.pt")
    assert_finishes_like_whole(interrupted, whole)
    err = capsys.readouterr().err
    if damage is delete:  # a kill between the two renames of a save leaves this: nothing to report
        assert "refused" not in err
    else:
        assert f"refused {interrupted / 'checkpoint.pt'} (" in err
    assert sorted(p.name for p in interrupted.iterdir()) == [
        "checkpoint.json", "checkpoint.prev.pt", "checkpoint.pt", "result.json",
    ]  # fmt: skip


@pytest.mark.parametrize("damage", DAMAGE, ids=lambda f: f.__name__)
def test_both_checkpoints_damaged_is_an_error_naming_both(interrupted, damage):
    for name in ("checkpoint.pt", "checkpoint.prev.pt"):
        damage(interrupted / name)
    with pytest.raises(CheckpointError, match=r"checkpoint\.pt: .*; .*checkpoint\.prev\.pt: ") as caught:
        fit(interrupted)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "damage, reason",
    [
        (truncate, "checkpoint.json cannot be read"),
        (empty, "checkpoint.json cannot be read"),
        (delete, "checkpoint.json is missing"),
        (lambda p: p.write_text('{"format": "something else"}'), "is not a go4align-checkpoint/1 record"),
    ],
)
def test_a_damaged_record_refuses_every_checkpoint(interrupted, damage, reason):
    damage(interrupted / "checkpoint.json")
    with pytest.raises(CheckpointError, match=reason) as caught:
        fit(interrupted)
    assert str(interrupted / "checkpoint.json") in str(caught.value) and "\n" not in str(caught.value)


def test_another_runs_record_is_refused_before_any_payload_is_read(interrupted, monkeypatch):
    def no_payload(*args, **kwargs):
        raise AssertionError("a payload was read")

    monkeypatch.setattr(torch, "load", no_payload)
    with pytest.raises(ValueError, match=r"checkpoint\.json was written by a different run \(differs in \['seed'\]"):
        Trainer(make_tiny(), parse_method_spec(METHOD), 1, interrupted, progress=False).fit()


KILLED_IN_SAVE = """
import os, sys
import torch
sys.path.insert(0, sys.argv[2])
torch.set_num_threads(1)
from helpers.training import make_tiny
from go4align.train import checkpoint, parse_method_spec, train_run

real_replace, calls = os.replace, []

def replace_then_die(source, target):
    # from the epoch-end checkpoint at step 7 on: the record's, checkpoint.pt -> prev, tmp -> checkpoint.pt,
    # then result.json's
    calls.append(target)
    if len(calls) == int(sys.argv[3]):
        os._exit(17)  # a kill: no cleanup, no finally
    real_replace(source, target)

def arm(info):
    if info.global_step == 5:  # after the first checkpoint (step 4), before the epoch end's (step 7)
        checkpoint.os.replace = replace_then_die

train_run(make_tiny(), parse_method_spec(sys.argv[4]), 0, sys.argv[1], checkpoint_every=4, callbacks=[arm],
          progress=False)
"""


@pytest.mark.slow
@pytest.mark.parametrize("stage", [1, 2, 3, 4])
def test_a_kill_at_any_point_of_a_save_resumes_bit_identically(tmp_path, whole, capsys, stage):
    """Killed while the record is replaced (1), after it (2), between the rotation's renames (3),
    or after them, writing result.json (4): the resumed run removes the dead writer's temporary
    file and ends as the uninterrupted one, with no complaint."""
    run_dir = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    args = [sys.executable, "-c", KILLED_IN_SAVE, str(run_dir), str(Path(__file__).parents[1]), str(stage), METHOD]
    child = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert child.returncode == 17, child.stderr[-2000:]
    assert any(p.name.startswith(".") for p in run_dir.iterdir())  # the killed writer's temporary
    assert_finishes_like_whole(run_dir, whole)
    assert "refused" not in capsys.readouterr().err
    assert sorted(p.name for p in run_dir.iterdir()) == [
        "checkpoint.json", "checkpoint.prev.pt", "checkpoint.pt", "result.json",
    ]  # fmt: skip


def test_resuming_with_another_thread_count_warns(interrupted, whole):
    threads = torch.get_num_threads()
    assert record(interrupted)["threads"] == threads
    torch.set_num_threads(threads + 1)
    try:
        with pytest.warns(RuntimeWarning, match=rf"resuming with {threads + 1} torch thread\(s\), .* with {threads};"):
            fit(interrupted)
    finally:
        torch.set_num_threads(threads)


def test_resuming_with_the_same_thread_count_is_silent(interrupted, whole):
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # the thread-count warning
        assert_finishes_like_whole(interrupted, whole)


def test_rng_states_round_trip_through_a_weights_only_file(tmp_path):
    random.seed(3), np.random.seed(3), torch.manual_seed(3)
    np.random.standard_normal()  # numpy keeps a cached gaussian: it must come back too
    state = rng_state()
    torch.save(state, tmp_path / "rng.pt")
    expected = (random.random(), np.random.standard_normal(3).tolist(), torch.rand(3))
    random.seed(0), np.random.seed(0), torch.manual_seed(0)
    set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    again = (random.random(), np.random.standard_normal(3).tolist(), torch.rand(3))
    assert expected[:2] == again[:2] and torch.equal(expected[2], again[2])


def test_a_store_without_files_does_not_exist(tmp_path):
    assert not CheckpointStore(tmp_path / "nothing").exists()
