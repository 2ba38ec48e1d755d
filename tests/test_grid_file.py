"""grid.json: one schema, one writer, one reader, and errors that name the file and the field."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from go4align.grid_file import (
    FIELDS,
    GRID_FILE,
    REQUIRED,
    SKIPPED_FILE,
    GridFileError,
    read_grid,
    read_skipped,
    write_grid,
    write_skipped,
)

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "src" / "go4align"


def record(**changes):
    """A grid as the trainer writes it after two invocations (the second, a worker's, with an id)."""
    first = {"command": "go4align bench toy --out runs", "time": "2025-01-01T00:00:00+00:00", "provenance": {}}
    base = {
        "benchmark": "toy",
        "benchmark_options": {"num_tasks": 3},
        "protocol": {"epochs": 2, "method_options": {"go4align": {"num_groups": 2}}},
        "methods": ["ls", "go4align"],
        "seeds": [0, 1],
        "go4align_version": "0.1.0",
        "start_time": "2025-01-01T00:00:00+00:00",
        "provenance": {"torch": "2.13.0"},
        "invocations": [first, {**first, "id": "ab12", "provenance": None}],
    }
    return {**base, **changes}


def test_a_written_grid_reads_back_equal(tmp_path):
    path = write_grid(record(), tmp_path / "grid" / GRID_FILE)
    assert path == tmp_path / "grid" / "grid.json"
    assert read_grid(path) == record()
    assert not [p.name for p in path.parent.iterdir() if p.name != GRID_FILE]  # no temporaries left


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"benchmark": 3}, "field 'benchmark' should be str, got 3"),
        ({"methods": "ls"}, "field 'methods' should be list, got 'ls'"),
        ({"methods": ["ls", 2]}, r"'methods' should hold method labels \(strings\), got \[2\]"),
        ({"seeds": [0, True]}, r"'seeds' should hold integers, got \[True\]"),
        ({"protocol": ["epochs"]}, "field 'protocol' should be dict or str, got"),
        ({"invocations": {"command": "x"}}, "field 'invocations' should be list"),
        ({"invocations": ["go4align bench"]}, r"invocations\[0\] should be an object, got 'go4align bench'"),
        ({"invocations": [{"time": "now"}]}, r"missing field 'invocations\[0\].command'"),
        ({"invocations": [{"command": ["go4align"]}]}, r"field 'invocations\[0\].command' should be str"),
        ({"invocations": [{"command": "x", "host": "a"}]}, r"unknown field\(s\) \['invocations\[0\].host'\]"),
        ({"version": "0.1.0"}, r"unknown field\(s\) \['version'\]"),
    ],
)
def test_a_bad_grid_is_refused_naming_the_file_and_the_field(tmp_path, changes, message):
    path = tmp_path / GRID_FILE
    with pytest.raises(GridFileError, match=message) as caught:
        write_grid(record(**changes), path)
    assert str(path) in str(caught.value) and not path.exists()  # nothing written
    path.write_text(json.dumps(record(**changes)))
    with pytest.raises(GridFileError, match=message) as caught:
        read_grid(path)
    assert str(caught.value).startswith(f"{path}: ")


@given(st.sampled_from(REQUIRED), st.booleans())
def test_every_required_field_is_named_when_missing(tmp_path_factory, name, as_null):
    path = tmp_path_factory.mktemp("missing") / GRID_FILE
    data = {**record(), name: None} if as_null else {k: v for k, v in record().items() if k != name}
    path.write_text(json.dumps(data))
    with pytest.raises(GridFileError, match=f"{path}: missing field '{name}'"):
        read_grid(path)


def test_optional_fields_may_be_absent_or_null(tmp_path):
    path = tmp_path / GRID_FILE
    minimal = {name: record()[name] for name in REQUIRED}
    path.write_text(json.dumps({**minimal, **{name: None for name in FIELDS if name not in REQUIRED}}))
    assert read_grid(path)["invocations"] is None


def test_a_grid_from_before_invocations_keeps_its_argv_command(tmp_path):
    old = {k: v for k, v in record().items() if k not in ("invocations", "provenance")}
    old["command"] = ["/usr/bin/go4align", "bench", "toy"]
    assert read_grid(write_grid(old, tmp_path / GRID_FILE))["command"] == old["command"]


@pytest.mark.parametrize("content", ["{", "[1, 2]", ""], ids=["truncated", "list", "empty"])
def test_a_damaged_file_is_named(tmp_path, content):
    path = tmp_path / GRID_FILE
    path.write_text(content)
    with pytest.raises(GridFileError, match="not valid JSON|expected a JSON object") as caught:
        read_grid(path)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


def test_an_unreadable_file_raises_its_os_error_naming_it(tmp_path):
    path = tmp_path / GRID_FILE
    path.mkdir()
    with pytest.raises(IsADirectoryError, match=f"cannot read {path}"):
        read_grid(path)


@pytest.mark.parametrize(
    "folder", sorted(str(p.parent.relative_to(ROOT)) for p in ROOT.glob(f"results/**/{GRID_FILE}"))
)
def test_every_stored_grid_reads(folder):
    grid = read_grid(ROOT / folder / GRID_FILE)
    assert grid["methods"] and grid["seeds"]


@pytest.mark.parametrize("name", [GRID_FILE, SKIPPED_FILE])
def test_one_module_names_the_file(name):
    """Every writer and reader of grid.json and skipped.json goes through go4align.grid_file."""
    naming = sorted(
        str(path.relative_to(SOURCE))
        for path in SOURCE.rglob("*.py")
        if any(quote + name + quote in path.read_text() for quote in "\"'")
    )
    assert naming == ["grid_file.py"]


@given(st.dictionaries(st.text(min_size=1), st.text()))
def test_skipped_methods_read_back_equal(skipped):
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        assert read_skipped(write_skipped(skipped, Path(folder) / SKIPPED_FILE)) == skipped


@pytest.mark.parametrize("content", ["{", "[]", '{"nash-mtl": 3}'], ids=["truncated", "list", "reason-not-text"])
def test_a_bad_skipped_file_is_named(tmp_path, content):
    path = tmp_path / SKIPPED_FILE
    path.write_text(content)
    with pytest.raises(GridFileError, match="not valid JSON|expected a JSON object|reason as a string") as caught:
        read_skipped(path)
    assert str(path) in str(caught.value)
    with pytest.raises(GridFileError, match="reason as a string"):
        write_skipped({"nash-mtl": None}, path)


def test_reading_grids_loads_no_torch():
    code = "import sys, go4align.grid_file; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
