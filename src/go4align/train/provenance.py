"""Where a result came from: the code, the libraries and the machine that produced it.

Float32 kernels round differently on another CPU or torch build, so a run repeats bit for bit only
under the same code, libraries, device and thread count; every ``result.json`` and every
invocation recorded in ``grid.json`` therefore carries :func:`collect`'s record, and
:func:`differences` says where the invocations of one grid (a grid resumed later, elsewhere or
under other code) or its runs disagree. Nothing here records a path of the machine.
"""

from __future__ import annotations

import datetime
import functools
import platform
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from go4align import __version__
from go4align.commands import entry_command, portable_command
from go4align.result_file import PROVENANCE_KEYS

__all__ = ["collect", "git_state", "cpu_model", "invocation", "entry_command", "portable_command", "differences"]

KEYS = PROVENANCE_KEYS  #: the keys of a provenance record (go4align.result_file)

_SOURCE = Path(__file__).resolve().parents[1]  # the go4align package's directory
_GIT_TIMEOUT_S = 10


def collect(device: str | torch.device = "cpu") -> dict[str, Any]:
    """The provenance record of work done now on ``device`` (keys :data:`KEYS`)."""
    commit, dirty = git_state()
    return {
        "go4align_version": __version__,
        "git_commit": commit,
        "git_dirty": dirty,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "device": device_name(device),
        "cpu": cpu_model(),
        "threads": torch.get_num_threads(),
        "platform": platform.platform(),
    }


@functools.cache
def git_state() -> tuple[str | None, bool | None]:
    """``(commit, dirty)`` of the git checkout the package runs from, ``(None, None)`` when it is
    not one (an installed wheel) or git is missing. Only a checkout that tracks this package's
    files counts, not an unrelated repository around a virtual environment. ``dirty``: tracked
    files differ from the commit. Read once per process."""
    init = _SOURCE / "__init__.py"
    tracked = _git("ls-files", "--error-unmatch", str(init))
    commit = _git("rev-parse", "HEAD") if tracked is not None else None
    if commit is None:
        return None, None
    status = _git("status", "--porcelain", "--untracked-files=no")
    return commit, None if status is None else bool(status)


def _git(*args: str) -> str | None:
    """git's stdout in the package's directory, or ``None`` when git fails or is missing."""
    try:
        done = subprocess.run(
            ["git", "-C", str(_SOURCE), *args], capture_output=True, text=True, timeout=_GIT_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


@functools.cache
def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else ``platform.processor()``)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def device_name(device: str | torch.device) -> str:
    """``"cpu"``, or the accelerator with its model, e.g. ``"cuda:0 (NVIDIA H100 80GB HBM3)"``."""
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):  # not a device: the trainer names the error, not the record
        return str(device)
    if device.type == "cuda" and torch.cuda.is_available():
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    return str(device)


def invocation(command: str | None, device: str | torch.device = "cpu") -> dict[str, Any]:
    """One entry of ``grid.json``'s ``invocations``: the command as typed (:func:`entry_command`
    when ``None``), made :func:`portable_command`, the UTC time and the provenance."""
    return {
        "command": portable_command(entry_command() if command is None else command),
        "time": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "provenance": collect(device),
    }


def differences(grid: Mapping[str, Any], results: Iterable[Mapping[str, Any]] = ()) -> list[str]:
    """What differs in where a grid's work ran: one line per invocation of ``grid`` (a
    ``grid.json``) whose provenance differs from the first recorded one, per invocation that
    recorded none (grids begun before go4align recorded it), and per result (``result.json``
    dicts, optional) that differs from that first record. Empty when everything ran under the
    same code, libraries and machine."""
    invocations = list(grid.get("invocations") or [])
    if not invocations:
        version = grid.get("go4align_version", "an unknown version")
        return [f"grid.json records no invocations (written by go4align {version}, before provenance was recorded)"]
    lines, first, first_number = [], None, None
    for number, entry in enumerate(invocations, start=1):
        where = f"invocation {number} ({entry.get('time')}: {entry.get('command')})"
        record = entry.get("provenance")
        if not record:
            lines.append(f"{where} recorded no provenance")
        elif first is None:
            first, first_number = record, number
        elif changed := _changed(first, record, f"invocation {first_number}"):
            lines.append(f"{where} ran with {changed}")
    for result in results:
        where = f"run {result.get('method_label')} seed {result.get('seed')}"
        record = result.get("provenance")
        if not record:
            lines.append(f"{where} records no provenance")
        elif first is not None and (changed := _changed(first, record, f"invocation {first_number}")):
            lines.append(f"{where} ran with {changed}")
    return lines


def _changed(first: Mapping[str, Any], other: Mapping[str, Any], name: str) -> str:
    """``"torch '2.13.0' (invocation 1: '2.12.1'), ..."`` for the keys whose values differ."""
    return ", ".join(
        f"{key} {other.get(key)!r} ({name}: {first.get(key)!r})" for key in KEYS if other.get(key) != first.get(key)
    )
