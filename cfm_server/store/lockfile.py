"""One server per data directory: an ``flock`` on ``<database>.lock``.

SQLite would let a second server open the same file and interleave its writes with the
first's, each keeping its own idea of a room's latest seq in memory; the second must fail
at once instead, and say which process holds the directory. The kernel drops the lock
with the descriptor, so a killed server never leaves it stuck; the file itself stays.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from cfm_server.datadir import FILE_MODE
from cfm_server.store.base import StoreError


class DataDirInUse(StoreError):
    """Another process (a running ``cfm serve``) holds the data directory's lock."""

    def __init__(self, message: str, holder_pid: int | None) -> None:
        super().__init__(message)
        self.holder_pid = holder_pid  # as the holder wrote it into the lock file


class DataDirLock:
    """The lock on the data directory of the database at ``database``, held between
    ``take`` and ``release``."""

    def __init__(self, database: Path) -> None:
        self.database = database
        self.path = database.with_name(database.name + ".lock")
        self._fd: int | None = None

    def take(self) -> None:
        """Hold the lock, or raise DataDirInUse (naming the holder's pid) at once."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, FILE_MODE)
        except OSError as e:
            raise StoreError(f"cannot create the lock file {self.path}: "
                             f"{e.strerror}") from e
        with contextlib.suppress(OSError):
            os.fchmod(fd, FILE_MODE)  # O_CREAT's mode went through the umask
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            raise DataDirInUse(
                f"{self.database} is in use by another cfm server"
                f"{f' (pid {holder})' if holder else ''}: it holds {self.path}. "
                f"Stop that server first, or give this one another data directory.",
                int(holder) if holder else None,
            ) from None
        except OSError as e:
            os.close(fd)
            raise StoreError(f"cannot lock {self.path}: {e.strerror}") from e
        # Who holds the lock, for the message above; advisory only.
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            # Closing the descriptor drops the flock; the file stays for the next server.
            os.close(self._fd)
            self._fd = None


def _read_pid(fd: int) -> str:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return ""
    return text if text.isdigit() else ""
