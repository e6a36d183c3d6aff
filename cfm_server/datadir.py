"""The data directory: private to the server's user (the directory 0700, files 0600),
and able to take the server's writes (free space, a probe write at start).

It holds every message in the clear (the database and its WAL), the invite key and the
AI contacts' tokens. Modes are set explicitly rather than left to the umask, which is
0022 on most systems: everything would be world-readable. SQLite gives the ``-wal`` and
``-shm`` files it creates the database file's mode, so a private database file is enough
for them; files an older server left readable are tightened at start.

A directory that already exists is the operator's: a wider mode only gets a warning
(it may be shared on purpose, e.g. a group that runs backups), never a chmod.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import stat
from pathlib import Path

log = logging.getLogger(__name__)

DIR_MODE = 0o700
FILE_MODE = 0o600


def make_private_dir(path: Path, *, warn: bool = True) -> None:
    """Create ``path`` (and missing parents) with mode 0700; warn (if ``warn``) when it
    already exists and others may read or enter it. OSError if it cannot be created."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        path.chmod(DIR_MODE)  # mkdir's mode is filtered through the umask
        return
    if warn and path.is_dir() and mode & 0o077:
        log.warning("the data directory %s is open to other users (mode %04o); anyone on "
                    "this machine may read every message: chmod 700 %s", path, mode, path)


def make_private_file(path: Path) -> None:
    """Make ``path`` an existing file with mode 0600: created empty if missing,
    tightened if wider. Silently leaves a file it cannot change (another owner)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CREAT, FILE_MODE)
    except OSError:
        return  # the caller's own open reports what is wrong
    try:
        with contextlib.suppress(OSError):
            if stat.S_IMODE(os.fstat(fd).st_mode) & ~FILE_MODE:
                os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)


def tighten(path: Path) -> None:
    """Mode 0600 for ``path`` if it exists and is wider; nothing else."""
    with contextlib.suppress(OSError):
        if stat.S_IMODE(path.stat().st_mode) & ~FILE_MODE:
            path.chmod(FILE_MODE)


class DataDirError(Exception):
    """The data directory cannot take the server's writes; the message says what to do."""


# Below this much free space start-up still goes on, with a warning.
LOW_FREE_BYTES = 256 << 20
_PROBE_BYTES = 4096


def _mib(n: float) -> str:
    return f"{n / (1 << 20):.1f} MiB"


def free_space_problem(data_dir: Path, min_free_mb: float) -> str | None:
    """Why the disk holding ``data_dir`` is too full to take writes, or None."""
    try:
        free = shutil.disk_usage(data_dir).free
    except OSError as exc:
        return f"cannot see the free space of {data_dir}: {exc.strerror or exc}"
    if free < min_free_mb * (1 << 20):
        return (f"the disk holding {data_dir} is full ({_mib(free)} free, min_free_mb is "
                f"{min_free_mb:g})")
    return None


def check_writable(data_dir: Path, min_free_mb: float) -> None:
    """Refuse to start on a full disk or a data directory that takes no writes (a
    read-only mount, permissions that root's os.access does not see): a server that
    starts there would take messages it cannot keep. DataDirError says what to do."""
    if min_free_mb:
        problem = free_space_problem(data_dir, min_free_mb)
        if problem is not None:
            raise DataDirError(f"{problem}; free some space, or choose another --data-dir")
    probe = data_dir / f".cfm-write-test-{os.getpid()}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, b"\0" * _PROBE_BYTES)
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        what = ("the disk holding it is full" if exc.errno in (errno.ENOSPC, errno.EDQUOT)
                else exc.strerror or str(exc))
        raise DataDirError(f"cannot write to the data directory {data_dir}: {what}; free "
                           f"some space or fix its permissions, or choose another --data-dir"
                           ) from None
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()
    with contextlib.suppress(OSError):
        free = shutil.disk_usage(data_dir).free
        if free < LOW_FREE_BYTES:
            log.warning("the disk holding %s has only %s free; the server stops taking "
                        "messages when it is full", data_dir, _mib(free))
