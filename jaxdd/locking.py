"""Sharing directories between processes: exclusive directory locks and atomic writes.

A run directory or an expert cache must be used by one process at a time:
two runs resuming the same directory would interleave their checkpoints, and
each would delete the other's half-written ones at start. `DirectoryLock`
makes the second process fail at once with a message naming the holder, or,
for a cache, wait until the holder is done and then reuse what it wrote:

    with DirectoryLock(run_dir):                  # fails if another run has it
        ...
    with DirectoryLock(cache_dir, timeout=None):  # waits for the other one
        ...

The lock is an advisory `fcntl.flock` on ``DIR/.lock``, which holds the
holder's pid. The kernel drops it when the holder exits, however it exits,
so a crashed or killed run never leaves a stale lock behind; the file itself
stays (removing it would let two processes lock two different files). Locks
are per open file, so a second `DirectoryLock` on a directory is refused even
within the process that holds the first. In a multi-process run
(`jaxdd.hosts`) process 0 takes the lock for all of them, and the others share
its outcome: they go on once it holds the lock, or raise its error.

`atomic_write_text` and `atomic_write_bytes` replace a file in one step, so a
reader (or a run killed mid-write) sees the old content or the new one,
never a mix.
"""

from __future__ import annotations

import fcntl
import os
import pathlib
import secrets
import time
from collections.abc import Callable
from typing import Any

from jaxdd.errors import JaxddError

LOCK_FILE = ".lock"
# How often a waiting `DirectoryLock` retries (seconds).
_POLL_S = 0.05


class DirectoryLockedError(JaxddError):
    """Another process holds the lock of a directory.

    Attributes:
      directory: the locked directory.
      pid: the holder's process id, or None if it could not be read.
    """

    def __init__(self, directory: pathlib.Path, pid: int | None, waited: float | None = None):
        """Builds the message; `waited` is how long the acquirer waited (None: not at all)."""
        self.directory = directory
        self.pid = pid
        holder = "another process" if pid is None else f"process {pid}"
        after = f" (waited {waited:g} s)" if waited else ""
        super().__init__(
            f"{directory} is in use by {holder}{after}; wait for it to finish or stop it, "
            "or use another directory"
        )


class DirectoryLock:
    """An exclusive lock on a directory, for as long as this process holds it.

    Args:
      directory: the directory to lock (created if missing).
      timeout: how long `acquire` waits while another process holds the
        lock: 0 (the default) fails at once, None waits as long as it takes.
      on_wait: called once, with the holder's pid (None if unknown), when
        `acquire` starts waiting; e.g. to tell the user what it waits for.

    Use as a context manager, or call `acquire()` and `release()`.
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        *,
        timeout: float | None = 0.0,
        on_wait: Callable[[int | None], Any] | None = None,
    ) -> None:
        if timeout is not None and timeout < 0:
            raise ValueError(f"timeout must be >= 0 or None, got {timeout}")
        self.directory = pathlib.Path(directory).absolute()
        self.path = self.directory / LOCK_FILE
        self.timeout = timeout
        self._on_wait = on_wait
        self._fd: int | None = None
        self._by_main = False  # held for this process by process 0

    @property
    def held(self) -> bool:
        """Whether this object holds the lock (or process 0 holds it for this process)."""
        return self._fd is not None or self._by_main

    def __enter__(self) -> DirectoryLock:
        return self.acquire()

    def __exit__(self, *exc_info: Any) -> None:
        self.release()

    def acquire(self) -> DirectoryLock:
        """Takes the lock, waiting up to `timeout` for another holder to let go.

        Returns:
          self.

        Raises:
          DirectoryLockedError: another process (or another `DirectoryLock`
            of this one) still holds the lock when the wait is over.
          RuntimeError: this object already holds the lock.
        """
        if self.held:
            raise RuntimeError(f"the lock of {self.directory} is already held by this object")
        from jaxdd import hosts

        hosts.decide(self._take)
        self._by_main = self._fd is None
        return self

    def _take(self) -> None:
        """Takes the lock in this process (`acquire` without the other processes)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            self._wait_for(fd)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def release(self) -> None:
        """Lets the lock go (nothing happens if it is not held)."""
        self._by_main = False
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)  # no stale pid for the next reader
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def _wait_for(self, fd: int) -> None:
        """Blocks until `fd` is locked, or raises once `timeout` has passed."""
        start = time.monotonic()
        waiting = False
        while not _try_lock(fd):
            if self.timeout is not None and time.monotonic() - start >= self.timeout:
                raise DirectoryLockedError(self.directory, self.holder(), self.timeout or None)
            if not waiting and self._on_wait is not None:
                self._on_wait(self.holder())
            waiting = True
            time.sleep(_POLL_S)

    def holder(self) -> int | None:
        """The pid written by the process holding the lock, or None if unknown."""
        try:
            return int(self.path.read_text().strip())
        except (OSError, ValueError):
            return None


def _try_lock(fd: int) -> bool:
    """Locks `fd` if no one else has its file locked; never blocks."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Replaces the file at `path` with `data` in one step.

    The data goes to a temporary file in the same directory, is flushed to
    disk, then renamed over `path`, so readers and a crash see either the
    old file or the complete new one.
    """
    path = pathlib.Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "xb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


def atomic_write_text(path: str | os.PathLike, text: str, *, encoding: str = "utf-8") -> None:
    """`atomic_write_bytes` for text, encoded with `encoding`."""
    atomic_write_bytes(path, text.encode(encoding))


def _fsync_directory(directory: pathlib.Path) -> None:
    """Makes a rename inside `directory` survive a power cut."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
