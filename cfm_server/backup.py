"""``cfm admin backup`` and ``restore``: everything a server needs to start again as it was.

A backup is a directory (0700, files 0600) holding

- ``cfm.sqlite3``: a consistent copy of the database made with SQLite's online backup
  API from one read transaction, so it can be taken while the server runs and writes;
  it is a single file (no WAL), checked with ``PRAGMA quick_check``;
- ``invite.key``: without it every invite code given out stops working after a restore
  (and ``invite.revoked``, the codes withdrawn, if any);
- ``ai/``: the AI contacts' memories and read positions (their tokens are made again at
  every start, but copied all the same);
- ``backup.json``: when, from where, the schema version and what the copy holds.

``server.json`` and the lock file are not part of it: the server writes them at start.
Restoring goes into a directory without a database, so that it never overwrites one.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import shutil
import sqlite3
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from cfm_server.datadir import FILE_MODE, make_private_dir

DB_FILE = "cfm.sqlite3"
KEY_FILE = "invite.key"
REVOKED_FILE = "invite.revoked"  # cfm_server/invites.py
AI_DIR = "ai"
MANIFEST = "backup.json"


class BackupError(Exception):
    """A backup or restore that cannot be done; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class Summary:
    """What a backup holds (``backup.json``), or what a restore put in place."""

    created: str  # ISO time with offset
    source: str  # the data directory it was taken from
    schema: int
    users: int
    messages: int
    invite_key: bool
    ai_files: int
    db_bytes: int
    # How the source server last ran (its server.json): a restored server started
    # without the same settings would take new handles from anyone. "" when unknown.
    registration: str = ""

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def backup(data_dir: Path, dest: Path) -> Summary:
    """Copy what ``data_dir`` needs to be restored into ``dest`` (a new or empty
    directory), while a server may be running on it."""
    data_dir, dest = data_dir.absolute(), dest.absolute()
    db = data_dir / DB_FILE
    if not db.is_file():
        raise BackupError(f"no cfm database in {data_dir}; check --data-dir")
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise BackupError(f"{dest} exists and is not an empty directory; give a new one")
    if dest == data_dir or data_dir in dest.parents:
        raise BackupError(f"{dest} is inside the data directory; back up somewhere else")
    _refuse_a_lost_wal(db)
    try:
        make_private_dir(dest)
    except OSError as exc:
        raise BackupError(f"cannot create {dest}: {exc.strerror or exc}") from None
    # Into a temporary name first: an interrupted backup never looks like a whole one.
    work = Path(tempfile.mkdtemp(prefix=".partial-", dir=dest))
    try:
        users, messages, schema = _copy_database(db, work / DB_FILE)
        has_key = _copy_file(data_dir / KEY_FILE, work / KEY_FILE)
        _copy_file(data_dir / REVOKED_FILE, work / REVOKED_FILE)
        ai_files = _copy_tree(data_dir / AI_DIR, work / AI_DIR)
        summary = Summary(
            created=datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            source=str(data_dir), schema=schema, users=users, messages=messages,
            invite_key=has_key, ai_files=ai_files,
            db_bytes=(work / DB_FILE).stat().st_size,
            registration=_last_registration(data_dir))
        _write_private(work / MANIFEST, json.dumps(summary.as_dict(), indent=1) + "\n")
        for item in work.iterdir():
            item.rename(dest / item.name)
    except OSError as exc:
        raise BackupError(f"cannot write the backup into {dest}: {exc.strerror or exc}"
                          ) from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return summary


def _last_registration(data_dir: Path) -> str:
    """``registration`` as the server last started on ``data_dir`` ran with it (its
    ``server.json``, see runfile.py), or "" when there is no such record."""
    try:
        value = json.loads((data_dir / "server.json").read_text("utf-8")).get(
            "registration", "")
    except (OSError, ValueError, AttributeError):
        return ""
    return value if isinstance(value, str) else ""


def _refuse_a_lost_wal(db: Path) -> None:
    """A database marked open by a server with no WAL beside it lost what the WAL held
    (cfm serve refuses it: see cfm_server/store/sqlite_schema.py, APP_ID_OPEN). The backup marks
    its copy whole, so backing it up would pass the loss on without a word.

    Read from the file's header, before SQLite opens it (opening makes a WAL). A running
    server always has its WAL beside the file, so this never refuses a live directory.
    """
    from cfm_server.store.sqlite_schema import APP_ID_OPEN

    wal = db.with_name(db.name + "-wal")
    if wal.exists():
        return
    try:
        with db.open("rb") as file:
            header = file.read(100)
    except OSError as exc:
        raise BackupError(f"cannot read {db}: {exc.strerror or exc}") from None
    if header[:16] != b"SQLite format 3\x00" or len(header) < 72:
        return  # not a database: the copy below says so
    # Looked at again: a server starting meanwhile makes its WAL before it marks open.
    if int.from_bytes(header[68:72], "big") == APP_ID_OPEN and not wal.exists():
        raise BackupError(
            f"{db} was copied (or left) without its {wal.name} file while a server had it "
            f"open: the messages written since its last checkpoint may be missing, and "
            f"cfm serve refuses it. Back up the data directory a server runs on (or a "
            f"whole copy); if you know this copy is whole (sqlite3 .backup), cfm admin "
            f"restore {db} --data-dir NEWDIR takes it in. Nothing was written")


def _copy_database(db: Path, target: Path) -> tuple[int, int, int]:
    """The online backup of ``db`` into ``target``: (users, messages, schema)."""
    from cfm_server.store.sqlite_schema import APP_ID_CLOSED

    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    os.close(fd)
    try:
        # Not read-only: a reader of a WAL database may have to create its -shm file.
        source = sqlite3.connect(db, timeout=10, isolation_level=None)
    except sqlite3.Error as exc:
        raise BackupError(f"cannot open {db}: {exc}") from None
    try:
        copy = sqlite3.connect(target, isolation_level=None)
        try:
            # pages=-1: the whole database in one step, from one read transaction, so the
            # copy is one consistent moment however busy the server is.
            source.backup(copy, pages=-1)
            copy.execute("PRAGMA journal_mode=DELETE")  # a single self-contained file
            copy.execute(f"PRAGMA application_id = {APP_ID_CLOSED}")  # a whole copy
            check = copy.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise BackupError(f"the copy of {db} failed its check ({check}); the "
                                  f"database may be damaged")
            users = copy.execute("SELECT count(*) FROM users").fetchone()[0]
            messages = copy.execute("SELECT count(*) FROM messages").fetchone()[0]
            schema = copy.execute("PRAGMA user_version").fetchone()[0]
        finally:
            copy.close()
    except sqlite3.Error as exc:
        raise BackupError(f"cannot back up {db}: {exc}") from None
    finally:
        source.close()
    return users, messages, schema


def _copy_file(source: Path, target: Path) -> bool:
    try:
        data = source.read_bytes()
    except FileNotFoundError:
        return False
    _write_private(target, data)
    return True


def _copy_tree(source: Path, target: Path) -> int:
    """Every regular file under ``source`` (0700 directories, 0600 files); how many."""
    count = 0
    if not source.is_dir():
        return 0
    for path in sorted(source.rglob("*")):
        if path.is_file() and not path.name.startswith("."):
            destination = target / path.relative_to(source)
            make_private_dir(destination.parent)
            if _copy_file(path, destination):
                count += 1
    return count


def _write_private(path: Path, data: str | bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    with os.fdopen(fd, "wb") as fh:
        os.fchmod(fh.fileno(), FILE_MODE)
        fh.write(data.encode() if isinstance(data, str) else data)
        fh.flush()
        os.fsync(fh.fileno())


# --- restore ------------------------------------------------------------------------


def read_manifest(source: Path) -> Summary | None:
    try:
        data = json.loads((source / MANIFEST).read_text("utf-8"))
        return Summary(**data)
    except (OSError, ValueError, TypeError):
        return None


def restore(source: Path, data_dir: Path) -> Summary:
    """Put the backup ``source`` (a ``cfm admin backup`` directory, or a bare database
    file known to be whole) in place as ``data_dir``, which must hold no database."""
    from cfm_server.store.sqlite_schema import APP_ID_CLOSED, SCHEMA_VERSION

    source, data_dir = source.absolute(), data_dir.absolute()
    if source.is_dir():
        db = source / DB_FILE
        if not db.is_file():
            raise BackupError(f"{source} is not a cfm backup (it has no {DB_FILE}); give "
                              f"a directory made by cfm admin backup")
    elif source.is_file():
        db, source = source, source.parent
        if (source / f"{db.name}-wal").exists():
            raise BackupError(f"{db} has a -wal file beside it: it was copied from a "
                              f"running server and may miss what is in the WAL; make a "
                              f"backup with cfm admin backup instead")
    else:
        raise BackupError(f"{source} does not exist")
    if (data_dir / DB_FILE).exists() or (data_dir / f"{DB_FILE}-wal").exists():
        raise BackupError(f"{data_dir} already holds a cfm database; restore into a new "
                          f"directory (or move that one away first)")
    try:
        make_private_dir(data_dir)
    except OSError as exc:
        raise BackupError(f"cannot create {data_dir}: {exc.strerror or exc}") from None
    target = data_dir / DB_FILE
    partial = data_dir / f".{DB_FILE}.restoring"
    try:
        shutil.copyfile(db, partial)
        os.chmod(partial, FILE_MODE)
        users, messages, schema = _check_copy(partial, SCHEMA_VERSION, APP_ID_CLOSED)
        os.replace(partial, target)
    except OSError as exc:
        raise BackupError(f"cannot write {target}: {exc.strerror or exc}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
    has_key = db.parent == source and _copy_file(source / KEY_FILE, data_dir / KEY_FILE)
    if db.parent == source:
        _copy_file(source / REVOKED_FILE, data_dir / REVOKED_FILE)
    ai_files = _copy_tree(source / AI_DIR, data_dir / AI_DIR) if db.parent == source else 0
    manifest = read_manifest(source)
    return Summary(
        created=manifest.created if manifest else "", source=str(source), schema=schema,
        users=users, messages=messages, invite_key=has_key, ai_files=ai_files,
        db_bytes=target.stat().st_size, registration=manifest.registration if manifest else "")


def _check_copy(path: Path, newest_schema: int, closed: int) -> tuple[int, int, int]:
    try:
        conn = sqlite3.connect(path, isolation_level=None)
    except sqlite3.Error as exc:
        raise BackupError(f"cannot open the copy {path}: {exc}") from None
    try:
        schema = conn.execute("PRAGMA user_version").fetchone()[0]
        if not 0 < schema <= newest_schema:
            raise BackupError(f"{path.name} is not a cfm database this version can use "
                              f"(schema {schema}, this cfm knows 1 to {newest_schema})")
        check = conn.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise BackupError(f"the backup's database is damaged ({check})")
        # A whole copy (see cfm_server/store/sqlite_schema.py, APP_ID_OPEN).
        conn.execute(f"PRAGMA application_id = {closed}")
        users = conn.execute("SELECT count(*) FROM users").fetchone()[0]
        messages = conn.execute("SELECT count(*) FROM messages").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"the backup's database cannot be read: {exc}") from None
    finally:
        conn.close()
    return users, messages, schema
