"""result.json: one schema, one writer, one reader, and errors that name the file and the field."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from go4align.result_file import FIELDS, REQUIRED, RESULT_FILE, ResultFileError, read_result, write_result

SOURCE = Path(__file__).resolve().parents[1] / "src" / "go4align"


def record(**changes):
    """A minimal valid record: the required fields and a few optional ones."""
    base = {
        "benchmark": "tiny",
        "method": "ls",
        "method_label": "ls",
        "seed": 0,
        "tasks": ["reg", "cls"],
        "metrics": {"reg_mse": 0.5, "cls_acc": 0.75},
        "directions": {"reg_mse": "lower", "cls_acc": "higher"},
        "complete": True,
        "epochs": [{"epoch": 1, "time_s": 0.1, "train_losses": {"reg": 1.0, "cls": 0.7}, "val": None, "test": {}}],
        "trace": {"steps": [0, 5], "losses": [[1.0, 0.7], [0.9, 0.6]], "weights": [[1, 1], [1, 1]], "groups": None},
        "step_time_ms": {"median": 2.0, "p25": 1.5, "p75": 2.5, "samples": 10, "clock": "perf_counter"},
        "selected_epoch": None,
    }
    return {**base, **changes}


def test_a_written_record_reads_back_equal(tmp_path):
    path = write_result(record(), tmp_path / "run" / RESULT_FILE)
    assert path == tmp_path / "run" / "result.json"
    assert read_result(path) == record()
    assert not [p.name for p in path.parent.iterdir() if p.name != RESULT_FILE]  # no temporaries left


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"seed": "zero"}, "field 'seed' should be int, got 'zero'"),
        ({"seed": True}, "field 'seed' should be int, got True"),
        ({"complete": 1}, "field 'complete' should be bool, got 1"),
        ({"metrics": {"reg_mse": "low", "cls_acc": 0.5}}, "'metrics' values must be numbers, got {'reg_mse': 'low'}"),
        ({"directions": {"reg_mse": "up", "cls_acc": "higher"}}, r"metrics \['reg_mse'\] need a direction"),
        ({"epochs": [{"epoch": "one"}]}, r"epochs\[0\] should be an object with an integer 'epoch'"),
        ({"trace": {"steps": [0], "losses": []}}, r"trace.losses should hold one row per step \(1 steps\)"),
        ({"step_time_ms": {"median": float("nan")}}, "'step_time_ms' values must be finite numbers"),
        ({"stl_reference": {"reg_mse": None}}, "'stl_reference' values must be numbers"),
        ({"metric": {}}, r"unknown field\(s\) \['metric'\]"),
    ],
)
def test_a_bad_record_is_refused_naming_the_file_and_the_field(tmp_path, changes, message):
    path = tmp_path / RESULT_FILE
    with pytest.raises(ResultFileError, match=message) as caught:
        write_result(record(**changes), path)
    assert str(path) in str(caught.value) and not path.exists()  # nothing written
    path.write_text(json.dumps(record(**changes)))
    with pytest.raises(ResultFileError, match=message) as caught:
        read_result(path)
    assert str(caught.value).startswith(f"{path}: ")


@given(st.sampled_from(REQUIRED), st.booleans())
def test_every_required_field_is_named_when_missing(tmp_path_factory, name, as_null):
    path = tmp_path_factory.mktemp("missing") / RESULT_FILE
    data = {**record(), name: None} if as_null else {k: v for k, v in record().items() if k != name}
    path.write_text(json.dumps(data))
    with pytest.raises(ResultFileError, match=f"{path}: missing field '{name}'"):
        read_result(path)


def test_optional_fields_may_be_absent_or_null(tmp_path):
    path = tmp_path / RESULT_FILE
    minimal = {name: record()[name] for name in REQUIRED}
    path.write_text(json.dumps({**minimal, **{name: None for name in FIELDS if name not in REQUIRED}}))
    assert read_result(path)["peak_memory_mb"] is None


@pytest.mark.parametrize("content", ["{", "[1, 2]", ""], ids=["truncated", "list", "empty"])
def test_a_damaged_file_is_named(tmp_path, content):
    path = tmp_path / RESULT_FILE
    path.write_text(content)
    with pytest.raises(ResultFileError, match="not valid JSON|expected a JSON object") as caught:
        read_result(path)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


def test_an_unreadable_file_raises_its_os_error_naming_it(tmp_path):
    path = tmp_path / RESULT_FILE
    path.mkdir()
    with pytest.raises(IsADirectoryError, match=f"cannot read {path}"):
        read_result(path)


def test_one_module_names_the_file():
    """Every writer and reader of result.json goes through go4align.result_file."""
    naming = sorted(
        str(path.relative_to(SOURCE))
        for path in SOURCE.rglob("*.py")
        if any(quote + "result.json" + quote in path.read_text() for quote in "\"'")
    )
    assert naming == ["result_file.py"]


def test_reading_results_loads_no_torch():
    code = "import sys, go4align.result_file, go4align.commands, go4align.report; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
