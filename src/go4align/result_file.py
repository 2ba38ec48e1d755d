"""The ``result.json`` of one run: its fields, and the one writer and the one reader of the file.

The trainer writes a run's ``result.json`` at every epoch end (and the grid writes the merged STL
run's) through :func:`write_result`; the grid (to skip complete runs) and the report read it
through :func:`read_result`. Both check the record against :data:`FIELDS`, so that a file the
code cannot use is an error naming the file and the field, never a wrong number further on.

A reader needs only the :data:`REQUIRED` fields; the others may be absent or ``null`` (a stored
STL run of an earlier budget, a file written by hand). This module imports neither torch nor
numpy, so that the report reads results without them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "FIELDS",
    "PROVENANCE_KEYS",
    "REQUIRED",
    "RESULT_FILE",
    "ResultFileError",
    "check_fields",
    "check_result",
    "read_json_object",
    "read_result",
    "write_result",
]

RESULT_FILE = "result.json"
DIRECTIONS = ("higher", "lower")
#: The keys of a provenance record (result.json's and grid.json's ``provenance``), in the order
#: they are written and compared: what, when it differs between runs, can change the numbers.
PROVENANCE_KEYS = (
    "go4align_version",
    "git_commit",
    "git_dirty",
    "python",
    "torch",
    "numpy",
    "device",
    "cpu",
    "threads",
    "platform",
)
_NUMBER = (int, float)


class ResultFileError(ValueError):
    """A ``result.json`` (or a record to be written as one) that breaks the schema; the message
    names the file and the field."""


@dataclass(frozen=True)
class Field:
    """One field of ``result.json``: its JSON types, whether a reader needs it, what it holds."""

    kind: tuple[type, ...]
    required: bool
    doc: str


FIELDS: dict[str, Field] = {
    "benchmark": Field((str,), True, "the benchmark's name"),
    "method": Field((str,), True, "the method's registry name (``stl`` for single-task runs)"),
    "method_label": Field((str,), True, "the method spec as given, its directory and report row"),
    "method_options": Field((dict,), False, "the options the method ran with, JSON-safe"),
    "seed": Field((int,), True, "the run's seed"),
    "tasks": Field((list,), True, "the task names in loss order"),
    "metrics": Field((dict,), True, "the reported metrics, per the protocol's reporting rule"),
    "directions": Field((dict,), True, "``higher`` or ``lower`` per metric"),
    "reporting_rule": Field((str,), False, "``last_k_mean:K`` or ``best_validation``"),
    "selected_epoch": Field((int,), False, "the epoch ``best_validation`` chose, else null"),
    "selected_epoch_per_task": Field((dict,), False, "a merged STL run's selected epoch per task"),
    "stl_reference": Field((dict,), False, "the benchmark's published single-task values, if any"),
    "epochs": Field((list,), False, "per epoch: epoch, time_s, train_losses, val and test metrics"),
    "time_per_epoch_s": Field(_NUMBER, False, "the median training wall time of an epoch"),
    "step_time_ms": Field((dict,), False, "steady-state step times: median, p25, p75, samples..."),
    "peak_memory_mb": Field(_NUMBER, False, "the run's peak memory, null where not measured"),
    "peak_memory_method": Field((str,), False, "how peak_memory_mb was measured"),
    "device": Field((str,), False, "the device the run trained on"),
    "trace": Field((dict,), False, "the weighting's diagnostics every ``stride`` steps"),
    "complete": Field((bool,), True, "whether every epoch of the protocol has run"),
    "nonfinite": Field((str,), False, "what a non-finite loss did: ``raise`` or ``skip``"),
    "skipped_steps": Field((int,), False, "steps dropped for a non-finite loss"),
    "provenance": Field((dict,), False, "the code, libraries and machine of the writing process"),
    "focus_task": Field((str,), False, "an STL run's own task"),
}
REQUIRED = tuple(name for name, field in FIELDS.items() if field.required)
#: The trace's per-step series: each holds one row per entry of ``trace["steps"]`` (or is null).
TRACE_SERIES = ("losses", "weights", "groups", "group_weights")
#: What ``step_time_ms`` must hold as finite numbers.
STEP_TIME_KEYS = ("median", "p25", "p75", "samples")


def write_result(result: Mapping[str, Any], path: str | Path) -> Path:
    """Check ``result`` against :data:`FIELDS` and write it to ``path`` atomically (a reader or a
    process killed mid-write sees the old file or the new one). Returns ``path``."""
    # Imported here: reading results (the report) must not load torch, which the writer brings.
    from go4align.train.checkpoint import write_json_atomic

    path = Path(path)
    check_result(result, f"result for {path}")
    write_json_atomic(dict(result), path)
    return path


def read_result(path: str | Path) -> dict[str, Any]:
    """The checked record of the ``result.json`` at ``path``. A file that is not a JSON object,
    or whose fields break :data:`FIELDS`, raises :class:`ResultFileError`; one that cannot be
    read raises the ``OSError`` of its kind, both naming the file."""
    data = read_json_object(Path(path), ResultFileError)
    check_result(data, str(path))
    return data


def read_json_object(path: Path, error: type[ValueError]) -> dict[str, Any]:
    """The JSON object in ``path``; ``error`` naming the file when it is not valid JSON or not an
    object, and the ``OSError`` of its kind naming the file when it cannot be read."""
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as failure:  # truncated, or not text at all
        raise error(f"{path}: not valid JSON ({failure})") from failure
    except OSError as failure:
        named = type(failure)(f"cannot read {path}: {failure.strerror or failure}")
        named.errno = failure.errno
        raise named from failure
    if not isinstance(data, dict):
        raise error(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def check_result(data: Mapping[str, Any], where: str) -> None:
    """Raise :class:`ResultFileError`, starting with ``where``, unless ``data`` is a valid record."""
    check_fields(data, FIELDS, where, ResultFileError)
    _check_numbers(data["metrics"], "metrics", where)
    if data.get("stl_reference") is not None:
        _check_numbers(data["stl_reference"], "stl_reference", where)
    undirected = [name for name in data["metrics"] if data["directions"].get(name) not in DIRECTIONS]
    if undirected:
        raise ResultFileError(
            f"{where}: metrics {undirected} need a direction 'higher' or 'lower' in 'directions', "
            f"got {data['directions']}"
        )
    _check_epochs(data.get("epochs") or [], where)
    if data.get("trace") is not None:
        _check_trace(data["trace"], where)
    if data.get("step_time_ms") is not None:
        _check_step_time(data["step_time_ms"], where)


def check_fields(
    data: Mapping[str, Any], fields: Mapping[str, Field], where: str, error: type[ValueError], prefix: str = ""
) -> None:
    """Raise ``error``, starting with ``where``, when ``data`` holds a field not in ``fields``,
    lacks a required one (absent or ``null``), or holds a value of another kind; field names
    are shown after ``prefix``. Shared by result.json and grid.json."""
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise error(f"{where}: unknown field(s) {[prefix + name for name in unknown]}; expected {list(fields)}")
    for name, field in fields.items():
        if data.get(name) is None:
            if field.required:
                raise error(f"{where}: missing field {prefix + name!r}")
            continue
        value = data[name]
        # bool is an int in Python; a seed or a metric written as true/false is still a mistake.
        if not isinstance(value, field.kind) or (isinstance(value, bool) and bool not in field.kind):
            kinds = " or ".join(kind.__name__ for kind in field.kind)
            raise error(f"{where}: field {prefix + name!r} should be {kinds}, got {value!r}")


def _is_number(value: Any) -> bool:
    return isinstance(value, _NUMBER) and not isinstance(value, bool)


def _check_numbers(mapping: Mapping[str, Any], name: str, where: str) -> None:
    bad = {key: value for key, value in mapping.items() if not _is_number(value)}
    if bad:
        raise ResultFileError(f"{where}: {name!r} values must be numbers, got {bad}")


def _check_epochs(epochs: list[Any], where: str) -> None:
    for index, epoch in enumerate(epochs):
        if not isinstance(epoch, dict) or not isinstance(epoch.get("epoch"), int):
            raise ResultFileError(f"{where}: epochs[{index}] should be an object with an integer 'epoch'")
        losses = epoch.get("train_losses")
        if losses is not None and not isinstance(losses, dict):
            raise ResultFileError(f"{where}: epochs[{index}].train_losses should be an object")


def _check_trace(trace: Mapping[str, Any], where: str) -> None:
    steps = trace.get("steps")
    if not isinstance(steps, list):
        raise ResultFileError(f"{where}: trace.steps should be a list")
    for key in TRACE_SERIES:
        rows = trace.get(key)
        if rows is not None and (not isinstance(rows, list) or len(rows) != len(steps)):
            raise ResultFileError(f"{where}: trace.{key} should hold one row per step ({len(steps)} steps)")


def _check_step_time(step_time: Mapping[str, Any], where: str) -> None:
    values = {key: step_time.get(key) for key in STEP_TIME_KEYS}
    if not all(_is_number(value) and math.isfinite(value) for value in values.values()):
        raise ResultFileError(f"{where}: 'step_time_ms' values must be finite numbers, got {values}")
