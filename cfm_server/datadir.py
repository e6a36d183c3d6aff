"""The data directory is private to the server's user: the directory 0700, files 0600.

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
import logging
import os
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
