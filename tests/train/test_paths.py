"""Every file and path failure is one line that names the path."""

import errno
import json
import os
import subprocess
import sys

import pytest
from helpers.training import make_tiny

from go4align.report.results import ReportError, load_grid
from go4align.train import MethodSpec, check_output_dir, run_grid
from go4align.train import checkpoint as checkpoint_module
from go4align.train.checkpoint import write_json_atomic

LONG = "x" * 300  # above every common file system's 255-byte name limit


def one_line_naming(error: BaseException, path) -> str:
    message = str(error)
    assert "\n" not in message and str(path) in message, message
    assert "[Errno" not in message and ".tmp" not in message, message
    return message


def test_a_writable_or_creatable_directory_passes_and_nothing_is_created(tmp_path, monkeypatch):
    assert check_output_dir(tmp_path) == tmp_path
    assert check_output_dir(tmp_path / "new" / "deeper", ["ls", "go4align:num_groups=2"]) == tmp_path / "new" / "deeper"
    monkeypatch.chdir(tmp_path)
    assert check_output_dir("relative/out") == type(tmp_path)("relative/out")
    assert sorted(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "where, kind, says",
    [
        (lambda d: d / "afile", NotADirectoryError, "exists and is not a directory"),
        (lambda d: d / "afile" / "sub", NotADirectoryError, "is not a directory"),
        (lambda d: d / LONG, OSError, "is 300 bytes; a file name may have at most"),
        (lambda d: d / LONG / "sub", OSError, "is 300 bytes; a file name may have at most"),
    ],
    ids=["file", "under-a-file", "name-too-long", "parent-name-too-long"],
)
def test_unusable_output_directories_are_named(tmp_path, where, kind, says):
    (tmp_path / "afile").write_text("not a directory")
    out = where(tmp_path)
    with pytest.raises(kind, match=says) as caught:
        check_output_dir(out)
    one_line_naming(caught.value, out)


def test_a_method_label_too_long_for_a_directory_name(tmp_path):
    with pytest.raises(OSError, match=r"method label 'lsx+' is 302 bytes") as caught:
        check_output_dir(tmp_path, ["ls", "ls" + LONG])
    assert caught.value.errno == errno.ENAMETOOLONG and "\n" not in str(caught.value)


def test_a_read_only_directory_is_named(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    with pytest.raises(PermissionError, match="is not writable") as caught:
        check_output_dir(tmp_path / "out")
    one_line_naming(caught.value, tmp_path)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes into read-only directories")
def test_a_chmod_read_only_directory_is_named(tmp_path):
    tmp_path.chmod(0o555)
    try:
        with pytest.raises(PermissionError, match="is not writable"):
            check_output_dir(tmp_path / "out")
    finally:
        tmp_path.chmod(0o755)


def test_run_grid_checks_the_directory_before_writing_anything(tmp_path):
    (tmp_path / "afile").write_text("")
    with pytest.raises(NotADirectoryError, match="afile exists and is not a directory"):
        run_grid(make_tiny(epochs=1), ["ls"], [0], tmp_path / "afile", progress=False)
    with pytest.raises(OSError, match="method label"):
        run_grid(make_tiny(epochs=1), ["ls", MethodSpec("ls", {}, "ls" + LONG)], [0], tmp_path / "out", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_a_failed_write_names_the_file_not_its_temporary(tmp_path, monkeypatch):
    def refuse(path, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(checkpoint_module, "open", refuse, raising=False)
    target = tmp_path / "result.json"
    with pytest.raises(PermissionError, match=f"cannot write {target}: Permission denied") as caught:
        write_json_atomic({}, target)
    assert caught.value.errno == errno.EACCES
    one_line_naming(caught.value, target)


def test_a_name_too_long_to_write_says_the_limit(tmp_path):
    target = tmp_path / LONG / "result.json"
    with pytest.raises(OSError, match=r"File name too long \(a file name may have at most \d+ bytes here\)") as caught:
        write_json_atomic({}, target)
    one_line_naming(caught.value, target)


@pytest.fixture
def grid(tmp_path):
    run_grid(make_tiny(epochs=1), ["ls"], [0], tmp_path, progress=False)
    return tmp_path


DAMAGE = {
    "truncated": lambda text: text[: len(text) // 2],
    "empty": lambda text: "",
    "not-an-object": lambda text: "[1, 2]",
}


@pytest.mark.parametrize("damage", DAMAGE.values(), ids=DAMAGE.keys())
def test_a_damaged_result_json_is_named_with_what_to_do(grid, damage):
    path = grid / "runs" / "ls" / "seed0" / "result.json"
    path.write_text(damage(path.read_text()))
    with pytest.raises(ValueError, match="delete it and re-run the same command") as caught:
        run_grid(make_tiny(epochs=1), ["ls"], [0], grid, progress=False)
    one_line_naming(caught.value, path)
    path.unlink()  # what the message says to do: the run is redone from its checkpoint
    assert run_grid(make_tiny(epochs=1), ["ls"], [0], grid, progress=False)["ls", 0]["complete"]


@pytest.mark.parametrize("damage", [*DAMAGE.values(), lambda text: "{}"], ids=[*DAMAGE.keys(), "no-keys"])
def test_a_damaged_grid_json_is_named(grid, damage):
    path = grid / "grid.json"
    path.write_text(damage(path.read_text()))
    with pytest.raises(ValueError, match="restore it, or use a new output directory") as caught:
        run_grid(make_tiny(epochs=1), ["ls"], [0], grid, progress=False)
    one_line_naming(caught.value, path)


def test_an_unreadable_result_json_is_named(grid):
    path = grid / "runs" / "ls" / "seed0" / "result.json"
    path.unlink()
    path.mkdir()  # reading it fails with IsADirectoryError, whoever runs the test
    with pytest.raises(IsADirectoryError, match=f"cannot read {path}") as caught:
        run_grid(make_tiny(epochs=1), ["ls"], [0], grid, progress=False)
    one_line_naming(caught.value, path)


@pytest.mark.parametrize(
    "content", [b'{"benchmark": "tiny", "meth', b"\xff\xfe\x00garbage"], ids=["truncated", "binary"]
)
def test_the_report_names_a_damaged_result_json(grid, content):
    path = grid / "runs" / "ls" / "seed0" / "result.json"
    path.write_bytes(content)
    with pytest.raises(ReportError, match="not valid JSON") as caught:
        load_grid(grid)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)
    json.loads((grid / "grid.json").read_text())  # the report wrote nothing over the grid


def test_a_grid_removes_the_temporaries_of_killed_writers(grid):
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    stl = grid / "runs" / "stl" / "seed0"
    stl.mkdir(parents=True)
    leftovers = [grid / f".grid.json.tmp{child.pid}", stl / f".result.json.tmp{child.pid}"]
    for leftover in leftovers:
        leftover.write_text("{")
    run_grid(make_tiny(epochs=1), ["ls", "stl"], [0], grid, progress=False)
    assert not any(leftover.exists() for leftover in leftovers)


def test_a_damaged_skipped_json_is_named_with_what_to_do(tmp_path):
    from go4align.train import grid

    (tmp_path / grid.SKIPPED).write_text('{"nash-mtl": ')
    with pytest.raises(ValueError, match=r"skipped\.json: not valid JSON .*; delete it: the grid writes it again"):
        run_grid(make_tiny(epochs=1), ["ls"], [0], tmp_path, progress=False)
