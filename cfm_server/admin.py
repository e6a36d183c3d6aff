"""``cfm admin``'s work: offline operations on a stopped server's SQLite database
(``remove-user``'s is in ``removal.py``, which a running server's control socket uses
too).

Everything here runs on a plain ``sqlite3`` connection that :func:`open_database` opens
under the data directory's lock (the same ``flock`` a running ``cfm serve`` holds, so a
served database is never touched) and creates nothing. The functions are pure over that
connection; the CLI (``admin_cli.py``) only maps flags and prints.

Removing a user frees the handle for someone new, so what could let the next holder
into the old one's affairs goes: the user row (token hash), memberships, contact
entries both ways, read marks. Messages stay, so no room's history gets a hole. Direct
conversations are the exception to "stay where they are": ``dm:alice:bob`` is named by
the two handles, so whoever claims ``alice`` next would read the old one's DMs. They are
moved, messages and all, to a room named ``archived:<ms>:dm:alice:bob``, which no client
can name (it is not a valid room), readable only by the operator.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Collection, Iterator
from pathlib import Path

from cfm_common import rules
from cfm_server.accounts import (
    ARCHIVE_PREFIX,
    AdminError,
    Stats,
    UserInfo,
    already_exists,
    check_resettable,
    new_token,
    new_user,
    user_info,
)
from cfm_server.removal import count as _count
from cfm_server.removal import existing_user as _existing_user

# Re-exported: cfm admin's remove-user (admin_cli.py) and its tests call these here.
from cfm_server.removal import plan_removal as plan_removal
from cfm_server.removal import remove_user as remove_user
from cfm_server.removal import transaction as _transaction
from cfm_server.store.base import UserRecord


def database_path(data_dir: Path) -> Path:
    from cfm_server.server import DB_FILE

    return data_dir / DB_FILE


@contextlib.contextmanager
def open_database(data_dir: Path) -> Iterator[sqlite3.Connection]:
    """The data directory's database under its lock; raises StoreError (DataDirInUse
    when a server holds it) or AdminError. Creates nothing when there is no database."""
    from cfm_server.store.sqlite import SqliteStore

    if not data_dir.is_dir():
        what = "is not a directory" if data_dir.exists() else "does not exist"
        raise AdminError(f"the data directory {data_dir} {what}; check --data-dir")
    with SqliteStore(database_path(data_dir)).offline() as conn:
        yield conn


@contextlib.contextmanager
def read_database(data_dir: Path) -> Iterator[sqlite3.Connection]:
    """The database read-only, beside a server that may be running: SQLite's WAL lets a
    reader see the last commit without the lock (for ``users`` and ``stats``)."""
    path = database_path(data_dir)
    if not path.is_file():
        raise AdminError(f"no cfm database in {data_dir}; check --data-dir (a cluster's "
                         f"accounts are in Redis: give --redis URL or CFM_REDIS_URL)")
    try:
        conn = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True, timeout=2)
        conn.execute("SELECT count(*) FROM users").fetchone()
    except sqlite3.Error as exc:
        raise AdminError(f"cannot read {path}: {exc}") from None
    try:
        yield conn
    finally:
        conn.close()


# --- users --------------------------------------------------------------------------


def list_users(conn: sqlite3.Connection, personas: Collection[str] = ()) -> list[UserInfo]:
    """Every user, by handle. ``personas``: handles of the server's own AI contacts."""
    rooms: dict[str, int] = {}
    dms: dict[str, int] = {}
    for name, room in conn.execute("SELECT name, room FROM members"):
        counts = dms if room.startswith(rules.DM_PREFIX) else rooms
        counts[name] = counts.get(name, 0) + 1
    sent = dict(conn.execute("SELECT sender, count(*) FROM messages GROUP BY sender"))
    return [user_info(UserRecord(name, "", display, "", status, bool(bot), created_ms),
                      personas, rooms.get(name, 0), dms.get(name, 0), sent.get(name, 0))
            for name, display, status, bot, created_ms in conn.execute(
                "SELECT name, display, status, bot, created_ms FROM users ORDER BY name")]


# --- reset-token --------------------------------------------------------------------


def reset_token(conn: sqlite3.Connection, name: str, personas: Collection[str] = (), *,
                deliver: Callable[[str], None] | None = None) -> tuple[str, str]:
    """Give ``name`` a fresh token (only its hash is stored); return (handle, token).

    ``deliver(token)`` runs before the new hash is committed: if it raises (a token file
    that cannot be written), nothing changes, so a token nobody got never locks a user
    out. The server's own AI contacts are refused: it gives each a fresh token every
    time it starts, so there is nothing to recover.
    """
    from cfm_server.hub import hash_token

    key, bot = _existing_user(conn, name)
    check_resettable(key, bot, personas)
    token = new_token()
    with _transaction(conn):
        conn.execute("UPDATE users SET token_hash = ? WHERE name = ?", (hash_token(token), key))
        if deliver is not None:
            deliver(token)
    return key, token


# --- add-user -----------------------------------------------------------------------


def add_user(conn: sqlite3.Connection, name: str, display: str | None, now_ms: int, *,
             deliver: Callable[[str], None] | None = None) -> tuple[str, str]:
    """Create a person's account (for servers whose registration is closed); return
    (handle, token). ``deliver(token)`` runs before the commit, as in :func:`reset_token`."""
    token = new_token()
    record = new_user(name, display, now_ms, token)
    if conn.execute("SELECT 1 FROM users WHERE name = ?", (record.name,)).fetchone():
        raise already_exists(record.name)
    with _transaction(conn):
        conn.execute(
            "INSERT INTO users (name, token_hash, display, psm, status, bot, created_ms)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (record.name, record.token_hash, record.display, record.psm, record.status,
             int(record.bot), record.created_ms))
        if deliver is not None:
            deliver(token)
    return record.name, token


# --- stats --------------------------------------------------------------------------


def stats(conn: sqlite3.Connection, db_path: Path) -> Stats:
    bots = _count(conn, "SELECT count(*) FROM users WHERE bot")
    users = _count(conn, "SELECT count(*) FROM users")
    rooms = [room for (room,) in conn.execute("SELECT room FROM rooms")]
    size = 0
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(OSError):
            size += db_path.with_name(db_path.name + suffix).stat().st_size
    return Stats(
        users=users,
        persons=users - bots,
        bots=bots,
        rooms=sum(rules.is_group_room(r) for r in rooms),
        dms=sum(r.startswith(rules.DM_PREFIX) for r in rooms),
        archived=sum(r.startswith(ARCHIVE_PREFIX) for r in rooms),
        messages=_count(conn, "SELECT count(*) FROM messages"),
        db_bytes=size,
    )
