"""Provenance: every result.json and grid.json says which code, libraries and machine made it."""

import json
import os
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.training import make_tiny

from go4align import __version__
from go4align.train import provenance, run_grid
from go4align.train.provenance import KEYS, collect, differences, entry_command, portable_command

REPOSITORY = Path(__file__).resolve().parents[2]


def strings(value):
    """Every string in a JSON value, keys included."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)
    elif isinstance(value, str):
        yield value


def absolute_paths(value) -> list[str]:
    """Strings naming an absolute path, alone or inside a command line or an option."""
    found = []
    for text in strings(value):
        try:
            words = shlex.split(text)
        except ValueError:
            words = text.split()
        found += [w for w in words if os.path.isabs(w) or os.path.isabs(w.partition("=")[2])]
    return found


def test_collect_names_code_libraries_and_machine():
    record = collect("cpu")
    assert tuple(record) == KEYS
    assert record["go4align_version"] == __version__ and record["torch"] == torch.__version__
    assert record["numpy"] == np.__version__ and record["device"] == "cpu"
    assert record["threads"] == torch.get_num_threads() and record["cpu"] and record["platform"]
    json.dumps(record)  # JSON as it is
    assert not absolute_paths(record)


@pytest.mark.skipif(not (REPOSITORY / ".git").exists(), reason="the tests do not run from a git checkout")
def test_the_git_commit_of_a_checkout_is_recorded():
    commit, dirty = provenance.git_state()
    assert commit is not None and len(commit) == 40 and int(commit, 16) >= 0 and isinstance(dirty, bool)


def test_no_git_gives_none(monkeypatch):
    provenance.git_state.cache_clear()
    monkeypatch.setenv("PATH", "")  # git cannot be found
    try:
        assert provenance.git_state() == (None, None)
    finally:
        provenance.git_state.cache_clear()


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["/opt/venv/bin/go4align", "bench", "--seeds", "0,1"], "go4align bench --seeds 0,1"),
        (["/home/me/go4align/__main__.py", "demo"], "python -m go4align demo"),
        (["/home/me/scripts/run grid.py", "--x", "a b"], "python 'run grid.py' --x 'a b'"),
        (["/usr/lib/python3/site-packages/pytest/__main__.py"], "python -m pytest"),
    ],
)
def test_entry_command_drops_the_script_path(argv, expected):
    assert entry_command(argv) == expected


def test_absolute_arguments_become_relative_or_elided(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    command = f"go4align bench --out {tmp_path}/runs/x --config=/elsewhere/c.toml --data-dir /data/qm9 --methods ls"
    portable = portable_command(command)
    assert portable == "go4align bench --out runs/x --config=.../c.toml --data-dir .../qm9 --methods ls"
    assert not absolute_paths(portable)
    assert portable_command("go4align bench --out ../runs/x") == "go4align bench --out ../runs/x"  # as typed
    assert portable_command("go4align bench --methods 'ls") == "go4align bench --methods 'ls"  # not shell words


def test_grid_and_results_record_every_invocation_without_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "grid"
    first = f"go4align bench --methods ls --out {out}"
    run_grid(make_tiny(epochs=1), ["ls", "stl"], [0], out, progress=False, command=first)
    run_grid(make_tiny(epochs=1), ["ls"], [0, 1], "grid", progress=False, command="go4align bench --out grid")
    grid = json.loads((out / "grid.json").read_text())
    invocations = grid["invocations"]
    commands = [i["command"] for i in invocations]
    assert commands == ["go4align bench --methods ls --out grid", "go4align bench --out grid"]
    assert all(set(i) == {"command", "time", "provenance"} and tuple(i["provenance"]) == KEYS for i in invocations)
    assert invocations[0]["time"].endswith("+00:00") and invocations[0]["time"] <= invocations[1]["time"]
    assert grid["provenance"] == invocations[0]["provenance"] and "command" not in grid
    results = [json.loads(p.read_text()) for p in sorted(out.rglob("result.json"))]
    assert len(results) == 5  # ls x 2 seeds, stl merged and its 2 tasks
    assert all(tuple(r["provenance"]) == KEYS for r in results)
    assert not absolute_paths(grid) and not any(absolute_paths(r) for r in results)
    assert differences(grid, results) == []


def test_a_grid_resumed_under_other_versions_says_so(tmp_path, monkeypatch):
    run_grid(make_tiny(epochs=1), ["ls"], [0], tmp_path, progress=False, command="go4align bench")
    real = provenance.collect
    monkeypatch.setattr(
        provenance, "collect", lambda device="cpu": {**real(device), "torch": "9.9.9", "git_commit": "f" * 40}
    )
    run_grid(make_tiny(epochs=1), ["ls"], [0, 1], tmp_path, progress=False, command="go4align bench --seeds 0,1")
    grid = json.loads((tmp_path / "grid.json").read_text())
    results = [json.loads((tmp_path / "runs" / "ls" / f"seed{s}" / "result.json").read_text()) for s in (0, 1)]
    lines = differences(grid, results)
    assert len(lines) == 2, lines
    assert lines[0].startswith("invocation 2 (") and "go4align bench --seeds 0,1" in lines[0]
    assert "torch '9.9.9' (invocation 1: " in lines[0] and "git_commit 'ffff" in lines[0]
    assert lines[1].startswith("run ls seed 1 ran with") and "torch '9.9.9'" in lines[1]


def test_a_grid_from_before_provenance_resumes_and_says_so(tmp_path):
    run_grid(make_tiny(epochs=1), ["ls"], [0], tmp_path, progress=False)
    grid = json.loads((tmp_path / "grid.json").read_text())
    # the format before provenance: the argv of the latest invocation, no invocations, and a
    # protocol without the fields added since
    for key in ("invocations", "provenance"):
        del grid[key]
    del grid["protocol"]["train_weighting_parameters"]
    grid["command"] = ["/opt/venv/bin/go4align", "bench", "--out", "/home/me/runs"]
    (tmp_path / "grid.json").write_text(json.dumps(grid))
    run_grid(make_tiny(epochs=1), ["ls"], [0], tmp_path, progress=False, command="go4align bench")
    resumed = json.loads((tmp_path / "grid.json").read_text())
    legacy, now = resumed["invocations"]
    assert legacy["provenance"] is None and legacy["time"] == grid["start_time"]
    assert legacy["command"].startswith("go4align bench --out ") and not absolute_paths(resumed)
    assert resumed["provenance"] is None and now["provenance"] is not None
    assert differences(resumed)[0].startswith("invocation 1 (") and "recorded no provenance" in differences(resumed)[0]
    assert differences({"go4align_version": "0.1.0", "command": ["x"]}) == [
        "grid.json records no invocations (written by go4align 0.1.0, before provenance was recorded)"
    ]


def test_run_grid_takes_the_command_as_one_string(tmp_path):
    with pytest.raises(TypeError, match="command"):
        run_grid(make_tiny(epochs=1), ["ls"], [0], tmp_path, progress=False, command=["go4align", "bench"])
