"""Atomic files and random-number-generator states, for runs that resume bit-identically."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["save_atomic", "write_json_atomic", "load_checkpoint", "rng_state", "set_rng_state"]


def _replace_atomically(path: Path, write) -> None:
    """Write through a temporary file in the same directory, fsync it, then rename it over
    ``path``: a reader, a run killed mid-write or a write that raises leaves the old file or the
    new one, never a torn one. The temporary name holds the pid, so a partial file left by a
    killed process is never read and never in the way of a later write; the directory is
    fsynced after the rename so that the new name survives a power loss too (POSIX)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:  # platforms where a directory cannot be opened (Windows): rename is all we have
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass  # some file systems refuse fsync on directories; the rename itself is still atomic
    finally:
        os.close(descriptor)


def save_atomic(obj: Any, path: str | os.PathLike) -> None:
    _replace_atomically(Path(path), lambda handle: torch.save(obj, handle))


def write_json_atomic(obj: Any, path: str | os.PathLike) -> None:
    text = json.dumps(obj, indent=1, allow_nan=True) + "\n"
    _replace_atomically(Path(path), lambda handle: handle.write(text.encode()))


def load_checkpoint(path: str | os.PathLike) -> dict:
    # Our own files only: they hold numpy and python RNG states, which weights_only rejects.
    return torch.load(path, map_location="cpu", weights_only=False)


def rng_state() -> dict:
    """Every global generator a training step can draw from."""
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None:
        torch.cuda.set_rng_state_all(state["cuda"])
