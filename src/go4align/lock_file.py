"""The lock files of a grid: their names, and the one reader of the owner they hold.

A lock file is written by :class:`go4align.train.locks.FileLock` (one JSON object: host, pid, the
Slurm job if any, a random token and the time) and read through :func:`read_owner`, by the locks
themselves and by the report, which says who is training a run that has no result yet. This
module imports neither torch nor numpy, so that the report reads grids without them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["GRID_LOCK", "RUN_LOCK", "describe_owner", "read_owner"]

#: In a grid: held while a process reads, changes and replaces grid.json or skipped.json.
GRID_LOCK = "grid.lock"
#: In a run directory: held by the process training the run.
RUN_LOCK = "run.lock"


def read_owner(path: str | os.PathLike) -> dict[str, Any] | None:
    """The owner a lock file names, or ``None`` when it is absent or cannot be read as one."""
    try:
        owner = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return owner if isinstance(owner, dict) else None


def describe_owner(owner: dict[str, Any] | None) -> str:
    """``host pid N`` (and the Slurm job) of a lock's owner, for messages."""
    if owner is None:
        return "an unknown process (the lock file cannot be read)"
    job = f", Slurm job {owner['job']}" if owner.get("job") else ""
    return f"{owner.get('host', '?')} pid {owner.get('pid', '?')}{job}"
