"""Opening the SQLite store's database file safely, or refusing and saying why.

Before SQLite touches anything: the data directory exists and is usable, the files are
0600, and a WAL has not lost its database file. Then the connection: a cfm database (or
an empty file) at a schema version this cfm knows, in WAL mode, migrated, with no other
program holding its write lock. Every refusal leaves the files as they were and names
the fix, since the person reading it is starting a server, not debugging SQLite.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from cfm_server.datadir import make_private_dir, make_private_file, tighten
from cfm_server.store.base import StoreError
from cfm_server.store.checkpoint import WAL_AUTOCHECKPOINT_PAGES
from cfm_server.store.sqlite_schema import APP_ID_OPEN, SCHEMA_VERSION, migrate

# SqliteStore's ``synchronous`` argument: the PRAGMA's value for each.
SYNCHRONOUS = {"normal": "NORMAL", "full": "FULL"}


def wal_path(path: Path) -> Path:
    return path.with_name(path.name + "-wal")


def make_data_dir(path: Path) -> None:
    """The data directory holding ``path``, created 0700 if missing, or why it cannot be."""
    data_dir = path.parent
    try:
        make_private_dir(data_dir, warn=False)  # cfm serve warns once, in open_store
    except (FileExistsError, NotADirectoryError) as e:
        raise StoreError(
            f"cannot create the data directory {data_dir}: {e.filename or data_dir} "
            f"exists and is not a directory; choose another data directory"
        ) from e
    except PermissionError as e:
        raise StoreError(
            f"cannot create the data directory {data_dir}: permission denied; create it "
            f"yourself or choose another data directory"
        ) from e
    except OSError as e:
        raise StoreError(f"cannot create the data directory {data_dir}: {e}") from e
    if not os.access(data_dir, os.W_OK | os.X_OK):
        raise StoreError(
            f"the data directory {data_dir} is not writable by this user; fix its "
            f"permissions or choose another data directory"
        )
    if path.is_dir():
        raise StoreError(f"the database path {path} is a directory, not a file")
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        raise StoreError(
            f"the database file {path} is not readable and writable by this user; "
            f"fix its permissions"
        )


def make_files_private(path: Path) -> None:
    """The database 0600 before SQLite opens it, whatever the umask: SQLite gives
    the -wal and -shm files it creates the database's mode. Files an older server
    left readable are tightened (see cfm_server/datadir.py)."""
    if path.exists():
        tighten(path)
    else:
        make_private_file(path)
    for suffix in ("-wal", "-shm"):
        tighten(path.with_name(path.name + suffix))


def refuse_a_lost_half(path: Path) -> None:
    """A WAL without its database file: starting would make a new, empty database
    and SQLite would throw the WAL's messages away. Refuse, saying why."""
    wal = wal_path(path)
    try:
        wal_bytes = wal.stat().st_size
    except FileNotFoundError:
        return
    try:
        db_bytes = path.stat().st_size
    except FileNotFoundError:
        db_bytes = 0
    if wal_bytes and not db_bytes:
        raise StoreError(
            f"{path.parent} holds {wal.name} but not {path.name}: the "
            f"database file is missing (a partial copy?), and the messages are in both "
            f"files together. Put {path.name} back beside it, or restore a backup "
            f"into a new directory (cfm admin restore); nothing was changed")


def refuse_a_lost_wal(conn: sqlite3.Connection, path: Path, had_wal: bool) -> None:
    """A database file marked open (see APP_ID_OPEN) without a WAL beside it."""
    try:
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    except sqlite3.Error as e:
        raise StoreError(explain_open_error(path, e)) from e
    if app_id == APP_ID_OPEN and not had_wal:
        raise StoreError(
            f"{path} was copied (or left) without its {wal_path(path).name} file "
            f"while a server had it open: the messages written since its last "
            f"checkpoint are missing. Copy the -wal file too, or use a backup made with "
            f"cfm admin backup; if you know this copy is whole (sqlite3 .backup), cfm "
            f"admin restore {path} --data-dir NEWDIR takes it in. Nothing was "
            f"changed")


def connect(path: Path, *, synchronous: str, busy_timeout_s: float,
            create: bool = True) -> sqlite3.Connection:
    """A connection in WAL mode at the current schema, or a StoreError saying why not.

    ``synchronous`` is the PRAGMA's value (``SYNCHRONOUS``); ``create=False`` refuses an
    empty file instead of creating the schema in it.
    """
    try:
        conn = sqlite3.connect(path, timeout=busy_timeout_s,
                               isolation_level=None)
    except sqlite3.Error as e:
        raise StoreError(explain_open_error(path, e)) from e
    try:
        # The first read of the header: a file that is not SQLite fails here, before
        # anything could write to it.
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{path} has schema version {version}, written by a newer cfm "
                f"(this one knows up to {SCHEMA_VERSION}); upgrade cfm"
            )
        if version == 0 and tables:
            raise StoreError(
                f"{path} is an SQLite database but not a cfm one; it was left "
                f"untouched; move it away or choose another data directory"
            )
        if version == 0 and not create:
            raise StoreError(f"{path} is empty, not a cfm database")
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise StoreError(
                f"cannot switch {path} to WAL mode (got {mode!r}); put the data "
                f"directory on a local file system"
            )
        conn.execute(f"PRAGMA synchronous={synchronous}")
        # A deleted message's text (a tombstone, retention) is zeroed where it lay in its
        # page, not left readable in the file's free space; FAST: where it costs no I/O.
        conn.execute("PRAGMA secure_delete=FAST")
        conn.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
        migrate(conn, path, version)
        # In WAL mode reads get past another program's write lock (an sqlite3 shell
        # inside a transaction): take the write lock once now, so such a lock is a
        # clear error at start-up rather than failed acks later.
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
    except StoreError:
        conn.close()
        raise
    except sqlite3.Error as e:
        conn.close()
        raise StoreError(explain_open_error(path, e)) from e
    return conn


def explain_open_error(path: Path, e: sqlite3.Error) -> str:
    """What an SQLite error at open means for this file, and what to do about it."""
    name = getattr(e, "sqlite_errorname", "")
    untouched = "it was left untouched; move it away or choose another data directory"
    if name == "SQLITE_NOTADB":
        return f"{path} is not an SQLite database ({e}); {untouched}"
    if name.startswith("SQLITE_CORRUPT"):
        return (f"{path} is corrupt ({e}); {untouched}, and restore the last backup "
                f"into a new one (cfm admin restore BACKUP --data-dir NEWDIR)")
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        return (f"{path} is locked by another process ({e}); close whatever holds "
                f"it (an sqlite3 shell, a backup tool) and try again")
    if name.startswith("SQLITE_READONLY"):
        return f"{path} is read-only ({e}); fix the permissions of the file"
    if name.startswith("SQLITE_FULL"):
        return f"the disk holding {path} is full ({e}); free some space"
    if name.startswith("SQLITE_CANTOPEN"):
        return f"cannot open {path} ({e}); check the data directory"
    return f"cannot open {path}: {e}"
