"""Lock files, so that processes sharing one grid (shards of a job array, local workers) never
write the same run, and update the grid's shared files one at a time.

A lock is a file created with ``O_CREAT | O_EXCL`` (which succeeds for one creator only, also
on NFS v3+) holding its owner: host, pid, the Slurm job (``SLURM_JOB_ID.SLURM_PROCID``) if any,
a random token and the time. Two locks are used (:mod:`go4align.train.grid`):

* ``RUN_DIR/run.lock``: the run's owner, held while it trains. A process finding a run locked by
  a live owner skips it (the owner finishes it); its owner refreshes the file's modification time
  every :data:`HEARTBEAT_S` seconds from a background thread.
* ``GRID/grid.lock``: held for the milliseconds of a read-modify-write of ``grid.json`` or
  ``skipped.json``; a process waits for it.

Stale locks (their owner died without removing them: killed, out of memory, node lost) are
taken over. A lock is stale when its owner is on this host and its pid is not alive; or it is on
another host with this process's Slurm job and rank (a requeued job restarted elsewhere: Slurm
never runs two attempts of one job at once); or its modification time is older than
``stale_after_s`` (:data:`STALE_AFTER_S`, 10 minutes, for run locks: 10 missed heartbeats; an
unreadable lock is judged by this age alone). Breaking renames the lock aside and checks that the
renamed file is the one judged stale, so two processes breaking it at once do not both win.
A process stopped (``SIGSTOP``, a suspended job) for longer than ``stale_after_s`` may lose its run
lock; its heartbeat notices and the release then leaves the new owner's lock alone.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from go4align.lock_file import describe_owner, read_owner

from .checkpoint import os_error, pid_alive

__all__ = ["FileLock", "LockTimeout", "HEARTBEAT_S", "STALE_AFTER_S"]

HEARTBEAT_S = 60.0
STALE_AFTER_S = 600.0
_HELD: set[str] = set()  # the tokens of the locks this process holds


class LockTimeout(TimeoutError):
    """A lock stayed held by a live owner for longer than the caller would wait."""


def _job() -> str | None:
    job = os.environ.get("SLURM_JOB_ID")
    return f"{job}.{os.environ.get('SLURM_PROCID', '0')}" if job else None


class FileLock:
    """One lock file (see the module docstring).

    Args:
        path: the lock file.
        stale_after_s: a lock not refreshed for this long is stale.
        heartbeat_s: while held, refresh the file this often (``None``: never; for locks held
            briefly).
    """

    def __init__(
        self, path: str | os.PathLike, *, stale_after_s: float = STALE_AFTER_S, heartbeat_s: float | None = None
    ):
        if not stale_after_s > 0:
            raise ValueError(f"stale_after_s must be > 0, got {stale_after_s!r}")
        if heartbeat_s is not None and not 0 < heartbeat_s < stale_after_s:
            raise ValueError(f"heartbeat_s must be in (0, stale_after_s={stale_after_s}), got {heartbeat_s!r}")
        self.path = Path(path)
        self.stale_after_s, self.heartbeat_s = stale_after_s, heartbeat_s
        self.holder: dict[str, Any] | None = None  # who held it at the last failed attempt
        self.lost = False  # the heartbeat found another owner's lock in its place
        self._token: str | None = None
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    @property
    def held(self) -> bool:
        return self._token is not None

    def try_acquire(self) -> bool:
        """Take the lock if it is free or stale; ``False`` (and :attr:`holder` set) when a live
        owner holds it."""
        if self.held:
            raise RuntimeError(f"{self.path} is already held by this lock object")
        for _ in range(3):  # a stale lock broken, then taken by a third process: look again
            if self._create():
                return True
            owner = read_owner(self.path)
            if not self._stale(owner):
                self.holder = owner
                return False
            self._break(owner)
        self.holder = read_owner(self.path)
        return False

    def acquire(self, wait_s: float) -> None:
        """Take the lock, waiting up to ``wait_s`` seconds for a live owner to release it."""
        deadline = time.monotonic() + wait_s
        while not self.try_acquire():
            if time.monotonic() > deadline:
                raise LockTimeout(
                    f"{self.path} has been held by {describe_owner(self.holder)} for over {wait_s:g} s; "
                    "if that process is gone, delete the file and run the command again"
                )
            time.sleep(0.02 + 0.03 * secrets.randbelow(100) / 100)

    def release(self) -> None:
        """Remove the lock if it is still this object's (after :attr:`lost`, it is not)."""
        if not self.held:
            return
        self._stop.set()
        if self._beat is not None:
            self._beat.join()
            self._beat = None
        owner = read_owner(self.path)
        if owner is not None and owner.get("token") == self._token:
            self.path.unlink(missing_ok=True)
        else:
            self.lost = True
        _HELD.discard(self._token)
        self._token = None

    @contextlib.contextmanager
    def waiting(self, wait_s: float) -> Iterator[FileLock]:
        """``with lock.waiting(seconds):`` the body runs holding the lock."""
        self.acquire(wait_s)
        try:
            yield self
        finally:
            self.release()

    # -- internals --------------------------------------------------------------------------
    def _create(self) -> bool:
        token = secrets.token_hex(8)
        owner = {"host": socket.gethostname(), "pid": os.getpid(), "job": _job(), "token": token, "time": time.time()}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        except OSError as error:
            raise os_error(type(error), error.errno, f"cannot create lock {self.path}: {error.strerror}") from error
        with os.fdopen(descriptor, "w") as handle:
            json.dump(owner, handle)
        self._token, self.lost = token, False
        _HELD.add(token)
        if self.heartbeat_s is not None:
            self._stop.clear()
            self._beat = threading.Thread(target=self._heartbeat, name=f"heartbeat {self.path}", daemon=True)
            self._beat.start()
        return True

    def _stale(self, owner: dict[str, Any] | None) -> bool:
        try:
            age = time.time() - self.path.stat().st_mtime
        except FileNotFoundError:
            return True  # released meanwhile: free
        if age > self.stale_after_s:
            return True
        if owner is None:
            return False  # being written, or damaged: judged by its age alone
        if owner.get("host") == socket.gethostname():
            pid = owner.get("pid")
            if pid == os.getpid():  # ours, or left by a dead process whose pid this one reuses
                return owner.get("token") not in _HELD
            return not isinstance(pid, int) or not pid_alive(pid)
        return owner.get("job") is not None and owner.get("job") == _job()

    def _break(self, owner: dict[str, Any] | None) -> None:
        """Remove the stale lock judged from ``owner``, and only that one."""
        grave = self.path.with_name(f"{self.path.name}.stale{os.getpid()}.{secrets.token_hex(4)}")
        try:
            os.rename(self.path, grave)
        except FileNotFoundError:
            return  # released or broken by someone else meanwhile
        moved = read_owner(grave)
        judged = None if owner is None else owner.get("token")
        if moved is not None and moved.get("token") != judged:
            # A new owner took the lock between our read and the rename: give it back.
            with contextlib.suppress(FileExistsError):
                os.link(grave, self.path)
        grave.unlink(missing_ok=True)

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            owner = read_owner(self.path)
            if owner is None or owner.get("token") != self._token:
                self.lost = True
                return
            try:
                os.utime(self.path)
            except OSError as error:
                if error.errno != errno.ENOENT:
                    raise
                self.lost = True
                return
