"""The ``grid.json`` of one grid: its fields, and the one writer and the one reader of the file;
and the grid's ``skipped.json`` (the methods it skipped, and why), with its own writer and reader.

``go4align.train.run_grid`` creates a grid's ``grid.json``, and extends it under the grid's lock
when a resume, a shard or a worker adds methods, seeds or an invocation, through
:func:`write_grid`; the grid (to extend it) and the report read it through :func:`read_grid`.
Both check the record against :data:`FIELDS`, so that a file the code cannot use is an error
naming the file and the field.

A reader needs the :data:`REQUIRED` fields; the others may be absent or ``null``. A field this
version does not know is refused, as in ``result.json``: it comes from a newer go4align or a
hand edit, and a resume would drop it silently. This module imports neither torch nor numpy, so
that the report reads grids without them.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from go4align.result_file import Field, check_fields, read_json_object

__all__ = [
    "FIELDS",
    "GRID_FILE",
    "INVOCATION_FIELDS",
    "REQUIRED",
    "SKIPPED_FILE",
    "GridFileError",
    "check_grid",
    "read_grid",
    "read_skipped",
    "write_grid",
    "write_skipped",
]

GRID_FILE = "grid.json"
#: Methods a grid skipped (a missing optional package, a method that does not apply to the
#: benchmark): ``{label: reason}``, beside grid.json; absent when nothing was skipped.
SKIPPED_FILE = "skipped.json"


class GridFileError(ValueError):
    """A ``grid.json`` (or a record to be written as one) that breaks the schema.

    The message names the file and the field.
    """


FIELDS: dict[str, Field] = {
    "benchmark": Field((str,), True, "the benchmark's name"),
    "benchmark_options": Field((dict,), False, "the options the benchmark was built with"),
    "protocol": Field((dict, str), False, "the protocol's settings (``Protocol.to_dict``), or its name"),
    "methods": Field((list,), True, "the method labels in the order given; a resume appends new ones"),
    "seeds": Field((list,), True, "the seeds in the order given; a resume appends new ones"),
    "go4align_version": Field((str,), False, "the version that began the grid"),
    "start_time": Field((str,), True, "when the grid began, UTC, ISO 8601"),
    "provenance": Field((dict,), False, "the code, libraries and machine of the first invocation"),
    "invocations": Field((list,), False, "every command run on the grid, oldest first: see INVOCATION_FIELDS"),
    "command": Field((str, list), False, "grids begun before invocations were kept: the latest command"),
}
REQUIRED = tuple(name for name, field in FIELDS.items() if field.required)
#: One entry of ``invocations``.
INVOCATION_FIELDS: dict[str, Field] = {
    "command": Field((str,), True, "the command as typed, without paths of the machine"),
    "time": Field((str,), False, "when it began, UTC, ISO 8601"),
    "provenance": Field((dict,), False, "the code, libraries and machine it ran with"),
    "id": Field((str,), False, "shared by the workers or jobs of one command, which record it once"),
}


def write_grid(grid: Mapping[str, Any], path: str | Path) -> Path:
    """Check ``grid`` against :data:`FIELDS` and write it to ``path`` atomically; returns ``path``."""
    # Imported here: reading grids (the report) must not load torch, which the writer brings.
    from go4align.train.checkpoint import write_json_atomic

    path = Path(path)
    check_grid(grid, f"grid for {path}")
    write_json_atomic(dict(grid), path)
    return path


def read_grid(path: str | Path) -> dict[str, Any]:
    """The checked record of the ``grid.json`` at ``path``.

    A file that is not a JSON object, or whose fields break :data:`FIELDS`, raises
    :class:`GridFileError`; one that cannot be read raises the ``OSError`` of its kind, both
    naming the file.
    """
    data = read_json_object(Path(path), GridFileError)
    check_grid(data, str(path))
    return data


def write_skipped(skipped: Mapping[str, str], path: str | Path) -> Path:
    """Write the ``{label: reason}`` of a grid's skipped methods to ``path`` atomically."""
    from go4align.train.checkpoint import write_json_atomic  # see write_grid

    path = Path(path)
    _check_skipped(skipped, f"skipped methods for {path}")
    write_json_atomic(dict(skipped), path)
    return path


def read_skipped(path: str | Path) -> dict[str, str]:
    """The ``{label: reason}`` of the ``skipped.json`` at ``path``; errors as :func:`read_grid`'s."""
    data = read_json_object(Path(path), GridFileError)
    _check_skipped(data, str(path))
    return data


def _check_skipped(data: Mapping[str, Any], where: str) -> None:
    bad = {label: reason for label, reason in data.items() if not isinstance(reason, str)}
    if bad:
        raise GridFileError(f"{where}: each skipped method needs its reason as a string, got {bad}")


def check_grid(data: Mapping[str, Any], where: str) -> None:
    """Raise :class:`GridFileError`, starting with ``where``, unless ``data`` is a valid grid."""
    check_fields(data, FIELDS, where, GridFileError)
    bad_methods = [label for label in data["methods"] if not isinstance(label, str)]
    if bad_methods:
        raise GridFileError(f"{where}: 'methods' should hold method labels (strings), got {bad_methods}")
    bad_seeds = [seed for seed in data["seeds"] if isinstance(seed, bool) or not isinstance(seed, int)]
    if bad_seeds:
        raise GridFileError(f"{where}: 'seeds' should hold integers, got {bad_seeds}")
    for index, entry in enumerate(data.get("invocations") or []):
        if not isinstance(entry, dict):
            raise GridFileError(f"{where}: invocations[{index}] should be an object, got {entry!r}")
        check_fields(entry, INVOCATION_FIELDS, where, GridFileError, f"invocations[{index}].")
