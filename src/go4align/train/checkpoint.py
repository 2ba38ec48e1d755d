"""Atomic files, and checkpoints that resume bit-identically and cannot run code.

A run directory holds up to two checkpoints and their record::

    checkpoint.pt        the newest: torch.save of tensors and plain containers only
    checkpoint.prev.pt   the one before it, kept for when the newest is damaged
    checkpoint.json      the record: format, the run's identity, the thread count, and the
                         sha256, size and step of each checkpoint

Loading reads the record first: a checkpoint of another run is refused before any payload is
read. A payload is used only when its sha256 is in the record, and then it is read with
``torch.load(weights_only=True)``, which builds tensors and plain containers and never calls
code named in the file. A damaged newest checkpoint makes the load fall back to the previous
one (the caller says so); when neither can be used, :class:`CheckpointError` names the files,
why each was refused, and what to do.

Writing: the payload goes to a temporary file first; then the record lists the new payload
and the last good one, and only then do the files rotate. Payloads are matched to the record by
checksum, not by name, so a process killed at any point leaves a directory that loads: the
previous good state, or the new one.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "CHECKPOINT",
    "PREVIOUS",
    "RECORD",
    "CheckpointError",
    "CheckpointStore",
    "Loaded",
    "write_json_atomic",
    "name_max",
    "os_error",
    "pid_alive",
    "remove_stale_temporaries",
    "rng_state",
    "set_rng_state",
]

CHECKPOINT = "checkpoint.pt"
PREVIOUS = "checkpoint.prev.pt"
RECORD = "checkpoint.json"
FORMAT = "go4align-checkpoint/1"
_CHUNK = 1 << 20


class CheckpointError(ValueError):
    """No checkpoint of a run directory can be used; the message names the files and why."""


def _write_synced(path: Path, write: Callable[[Any], None]) -> None:
    with open(path, "wb") as handle:
        write(handle)
        handle.flush()
        os.fsync(handle.fileno())


def _replace_atomically(path: Path, write: Callable[[Any], None]) -> None:
    """Write through a temporary file in the same directory, fsync it, then rename it over
    ``path``: a reader, a run killed mid-write or a write that raises leaves the old file or the
    new one, never a torn one. The temporary name holds the pid, so that
    :func:`remove_stale_temporaries` can tell a dead writer's file from a live one's; the
    directory is fsynced after the rename so that the new name survives a power loss too."""
    tmp = _temporary(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            _write_synced(tmp, write)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    except OSError as error:
        raise _naming(error, path) from error
    _fsync_directory(path.parent)


def _temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


def _naming(error: OSError, path: Path) -> OSError:
    """The same kind of OSError, saying which file could not be written (not the temporary)."""
    reason = error.strerror or str(error)
    if error.errno == errno.ENAMETOOLONG:
        reason += f" (a file name may have at most {name_max(path.parent)} bytes here)"
    return os_error(type(error), error.errno, f"cannot write {path}: {reason}")


def os_error(kind: type[OSError], code: int | None, message: str) -> OSError:
    """An OSError of ``kind`` whose text is ``message`` alone (no "[Errno N]" in front) and
    whose ``errno`` is still ``code``, for callers that test it."""
    error = kind(message)
    error.errno = code
    return error


def name_max(directory: Path) -> int:
    """The longest file name, in bytes, that the file system under ``directory`` (or its
    nearest existing parent) accepts."""
    for candidate in (directory, *directory.parents):
        try:
            return os.pathconf(candidate, "PC_NAME_MAX")
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as error:
            if error.errno != errno.ENAMETOOLONG:  # a name too long is a name that does not exist
                break
        except (ValueError, AttributeError):  # no pathconf (Windows)
            break
    return 255  # the common limit


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


def write_json_atomic(obj: Any, path: str | os.PathLike) -> None:
    text = json.dumps(obj, indent=1, allow_nan=True) + "\n"
    _replace_atomically(Path(path), lambda handle: handle.write(text.encode()))


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this host (someone else's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists, it is someone else's
        return True
    return True


def remove_stale_temporaries(directory: str | os.PathLike) -> list[Path]:
    """Delete the temporary files (``.NAME.tmpPID``) that writers killed mid-write left in
    ``directory``; a file whose process is still alive (on this machine) is left alone.
    Returns the files removed."""
    removed = []
    directory = Path(directory)
    if not directory.is_dir():
        return removed
    for path in directory.glob(".*.tmp*"):
        pid = path.name.rpartition(".tmp")[2]
        if pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _as_json(value: Any) -> Any:
    """``value`` as it reads back from JSON (tuples become lists), so that identities compare."""
    return json.loads(json.dumps(value, allow_nan=True))


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


@dataclass(frozen=True)
class Loaded:
    """A verified checkpoint: its payload, the file it came from, the step it holds, the
    thread count of the run that wrote it, and the files refused before it (with why)."""

    payload: dict
    path: Path
    global_step: int | None
    threads: int | None
    refused: list[tuple[Path, str]]


class CheckpointStore:
    """The checkpoints of one run directory (see the module docstring)."""

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)
        self._good: tuple[str, dict] | None = None  # the file holding the last verified payload, its entry

    @property
    def files(self) -> list[Path]:
        return [self.directory / name for name in (CHECKPOINT, PREVIOUS, RECORD)]

    def exists(self) -> bool:
        return any(path.exists() for path in self.files)

    def save(self, payload: dict, identity: dict, *, global_step: int, threads: int | None = None) -> None:
        """Write ``payload`` as the newest checkpoint and keep the last good one as the previous."""
        directory, newest = self.directory, self.directory / CHECKPOINT
        tmp = _temporary(newest)
        try:
            try:
                directory.mkdir(parents=True, exist_ok=True)
                _write_synced(tmp, lambda handle: torch.save(payload, handle))
                entry = {"file": CHECKPOINT, "sha256": _sha256(tmp), "bytes": tmp.stat().st_size}
            except OSError as error:
                raise _naming(error, newest) from error
            entry["global_step"] = global_step
            kept = self._good
            entries = [entry] + ([{**kept[1], "file": PREVIOUS}] if kept is not None else [])
            record = {"format": FORMAT, "identity": _as_json(identity), "threads": threads, "checkpoints": entries}
            write_json_atomic(record, directory / RECORD)
            # From here the record lists both payloads by checksum: a kill at any point leaves one that loads.
            try:
                if kept is not None and kept[0] == CHECKPOINT:
                    os.replace(newest, directory / PREVIOUS)
                os.replace(tmp, newest)
            except OSError as error:
                raise _naming(error, newest) from error
        finally:
            tmp.unlink(missing_ok=True)
        _fsync_directory(directory)
        self._good = (CHECKPOINT, entry)

    def load(self, identity: dict, keys: Iterable[str] = ()) -> Loaded:
        """The newest usable checkpoint of the run ``identity`` names, a dict with at least ``keys``.

        Raises ``ValueError`` when the record belongs to another run, and
        :class:`CheckpointError` when no checkpoint passes its checksum and a weights-only load.
        """
        record = self._read_record()
        self._check_identity(record["identity"], identity)
        known = {e["sha256"]: e for e in record["checkpoints"] if isinstance(e, dict) and "sha256" in e}
        refused = []
        for name in (CHECKPOINT, PREVIOUS):
            path = self.directory / name
            if not path.exists():
                continue  # a save killed between its two renames leaves only the previous one
            try:
                payload, entry = self._verified(path, known, keys)
            except _Refused as reason:
                refused.append((path, str(reason)))
                continue
            self._good = (name, entry)
            return Loaded(payload, path, entry.get("global_step"), record.get("threads"), refused)
        why = "; ".join(f"{path}: {reason}" for path, reason in refused) or f"{RECORD} but no checkpoint file"
        raise CheckpointError(self._nothing_usable(why))

    def _read_record(self) -> dict:
        path = self.directory / RECORD
        try:
            record = json.loads(path.read_text())
        except FileNotFoundError:
            why = f"{path} is missing, so no checkpoint can be verified (an older go4align's, or copied without it)"
            raise CheckpointError(self._nothing_usable(why)) from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise CheckpointError(self._nothing_usable(f"{path} cannot be read ({_first_line(error)})")) from error
        well_formed = (
            isinstance(record, dict)
            and record.get("format") == FORMAT
            and isinstance(record.get("identity"), dict)
            and isinstance(record.get("checkpoints"), list)
        )
        if not well_formed:
            raise CheckpointError(self._nothing_usable(f"{path} is not a {FORMAT} record"))
        return record

    def _check_identity(self, theirs: dict, mine: dict) -> None:
        mine = _as_json(mine)
        differ = sorted(k for k in mine.keys() | theirs.keys() if mine.get(k) != theirs.get(k))
        if differ:
            raise ValueError(
                f"{self.directory / RECORD} was written by a different run (differs in {differ}: "
                f"{ {k: theirs.get(k) for k in differ} } there, { {k: mine.get(k) for k in differ} } now); "
                "use a new output directory or delete it"
            )

    @staticmethod
    def _verified(path: Path, known: dict[str, dict], keys: Iterable[str]) -> tuple[dict, dict]:
        try:
            digest = _sha256(path)
        except OSError as error:
            raise _Refused(f"cannot be read ({_first_line(error)})") from error
        if digest not in known:
            empty = path.stat().st_size == 0
            raise _Refused("empty" if empty else f"its sha256 is not in {RECORD} (damaged or altered)")
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # noqa: BLE001 -- whatever torch.load raises, the file is unusable
            raise _Refused(f"not a tensors-only checkpoint ({_first_line(error)})") from error
        if not isinstance(payload, dict):
            raise _Refused(f"holds a {type(payload).__name__}, not a checkpoint")
        missing = sorted(set(keys) - set(payload))
        if missing:
            raise _Refused(f"lacks {missing}")
        return payload, known[digest]

    def _nothing_usable(self, why: str) -> str:
        names = ", ".join(p.name for p in self.files)
        return (
            f"no usable checkpoint in {self.directory}: {why}. Nothing was loaded from it. To train this run "
            f"from the start, delete {names} there (or restore them from a copy)"
        )


class _Refused(Exception):
    """Why one checkpoint file cannot be used."""


def rng_state() -> dict:
    """Every global generator a training step can draw from, as tensors and plain values (a
    weights-only load accepts no numpy arrays)."""
    name, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": {
            "name": str(name),
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "position": int(position),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    numpy = state["numpy"]
    keys = numpy["keys"].numpy().astype(np.uint32)
    np.random.set_state((numpy["name"], keys, numpy["position"], numpy["has_gauss"], numpy["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None:
        torch.cuda.set_rng_state_all(state["cuda"])
