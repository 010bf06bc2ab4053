"""A run folder's files: one writer at a time, and files replaced whole, never edited in place.

Why a lock file with ``flock``: the kernel releases it when the holding process dies (``kill -9``
included), so a crashed run never blocks its own ``--resume``, while a second writer (a resume
started while the run still goes, two resumes at once) is refused instead of interleaving queries.
"""
from __future__ import annotations

import errno
import json
import os
import socket
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from ..errors import MangoError

LOCK_NAME = ".lock"


def folder_error(path: Path, exc: OSError, doing: str) -> MangoError:
    """An OS error on a run folder as one line that says what to do next."""
    reason = exc.strerror or type(exc).__name__
    if exc.errno == errno.ENOSPC:
        return MangoError(f"disk full while {doing} in {path}: free space, then continue with "
                          f"mango run --resume --out {path}")
    return MangoError(f"cannot write run folder {path} ({reason}) while {doing}: choose another --out "
                      "(a writable folder)")


class FolderLock:
    """Exclusive lock on a run folder, held from :meth:`acquire` to :meth:`release`."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.path = Path(folder), Path(folder) / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> FolderLock:
        import fcntl

        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise folder_error(self.folder, exc, "locking it") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 512, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise MangoError(f"run folder {self.folder} is in use by {holder}: one process writes a run at a "
                             "time; wait for it to finish or stop it, then resume") from None
        me = f"pid {os.getpid()} on {socket.gethostname()} (since {time.strftime('%Y-%m-%d %H:%M:%S')})"
        os.ftruncate(fd, 0)
        os.pwrite(fd, me.encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing releases the flock
            self._fd = None

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def fsync_dir(folder: Path) -> None:
    """Make a rename or a new file in ``folder`` durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _umask() -> int:
    """The process umask (read back by setting it; done once)."""
    global _UMASK
    if _UMASK is None:
        _UMASK = os.umask(0o022)
        os.umask(_UMASK)
    return _UMASK


_UMASK: int | None = None


def replace_file(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Write ``path`` whole through ``write(f)``: a temporary file, fsync, rename over the old one.

    A crash at any instant leaves either the old file or the new one, never a torn one.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, 0o666 & ~_umask())  # as open() would create it (mkstemp makes it private)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def write_text(path: Path, text: str) -> None:
    replace_file(path, lambda f: None if f.write(text.encode()) else None)


def write_json(path: Path, data: object) -> None:
    write_text(path, json.dumps(data, indent=2) + "\n")
