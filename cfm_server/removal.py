"""``cfm admin remove-user``'s work on a single node's SQLite database: on a plain
connection while the server is stopped (``admin.py``), or on the running server's own
connection, asked through its control socket (``control.py``). See ``admin.py`` for
what goes and what stays; those the removal concerns are told later (schema v5's
``notices``: domain/notices.py) or at once by the running server (domain/removal.py).
"""

from __future__ import annotations

import contextlib
import secrets
import sqlite3
from collections.abc import Collection, Iterator
from dataclasses import asdict

from cfm_common import rules
from cfm_server.accounts import ARCHIVE_PREFIX, Removal, check_handle, no_such_user


def existing_user(conn: sqlite3.Connection, name: str) -> tuple[str, bool]:
    """(canonical handle, bot) of a stored user; AdminError for a bad or unknown name."""
    key = check_handle(name)
    row = conn.execute("SELECT bot FROM users WHERE name = ?", (key,)).fetchone()
    if row is None:
        raise no_such_user(key)
    return key, bool(row[0])


def plan_removal(conn: sqlite3.Connection, name: str, *, recorded: bool = False) -> Removal:
    """What removing ``name`` will do. ``recorded``: every room with messages has its
    record (true on a running server, whose start gave one to any that had lost it), so
    DM rooms are looked for without reading every DM message."""
    key, _bot = existing_user(conn, name)
    dms = _dm_rooms(conn, key, recorded)
    return Removal(
        name=key,
        memberships=count(conn, "SELECT count(*) FROM members WHERE name = ?", key),
        contacts=count(conn, "SELECT count(*) FROM contacts WHERE owner = ? OR name = ?",
                        key, key),
        reads=count(conn, "SELECT count(*) FROM reads WHERE name = ?", key),
        messages_kept=count(
            conn, "SELECT count(*) FROM messages WHERE sender = ? AND room NOT LIKE 'dm:%'",
            key),
        dms=dms,
        dm_messages=sum(count(conn, "SELECT count(*) FROM messages WHERE room = ?", room)
                        for room in dms),
    )


def remove_user(conn: sqlite3.Connection, name: str, now_ms: int,
                online: Collection[str] = (), *, recorded: bool = False) -> Removal:
    """Delete ``name`` and free its handle, in one transaction (see the module docstring).

    Those it concerns are told at their next sign-in (schema v5's ``notices``,
    domain/notices.py): the users it had added who had not answered (the request is
    withdrawn) and its DM partners (the DM's member leave). ``online``: users a running
    server tells at once instead (control.py); ``recorded``: as for plan_removal."""
    plan = plan_removal(conn, name, recorded=recorded)
    key = plan.name
    archived = []
    with transaction(conn):
        _note_removal(conn, key, plan.dms, now_ms, frozenset(online))
        conn.execute("DELETE FROM users WHERE name = ?", (key,))
        conn.execute("DELETE FROM members WHERE name = ?", (key,))
        conn.execute("DELETE FROM contacts WHERE owner = ? OR name = ?", (key, key))
        conn.execute("DELETE FROM reads WHERE name = ?", (key,))
        # Whoever claims the handle next moderates nothing, has reacted to nothing and is
        # mentioned nowhere (schema v4; their messages' authorship is told by their
        # account's creation time, see cfm_server/domain/changes.py).
        conn.execute("DELETE FROM moderators WHERE name = ?", (key,))
        conn.execute("DELETE FROM reactions WHERE name = ?", (key,))
        conn.execute("DELETE FROM mentions WHERE name = ?", (key,))
        # Retries are recognised by (sender, client id): whoever claims the handle next
        # must not have a new message taken for a retry of one of these.
        conn.execute("UPDATE messages SET client_id = NULL WHERE sender = ?", (key,))
        for room in plan.dms:
            archive = f"{ARCHIVE_PREFIX}{now_ms}:{room}"
            row = conn.execute("SELECT epoch FROM rooms WHERE room = ?", (room,)).fetchone()
            # Messages whose room record was lost still get one, so that the server does
            # not "restore" the archive at every start.
            epoch = row[0] if row else secrets.token_hex(8)
            conn.execute("DELETE FROM rooms WHERE room = ?", (room,))
            moved = conn.execute("UPDATE messages SET room = ? WHERE room = ?",
                                 (archive, room)).rowcount
            for table in ("reactions", "mentions"):
                conn.execute(f"UPDATE {table} SET room = ? WHERE room = ?", (archive, room))
            if moved:
                conn.execute("INSERT INTO rooms (room, epoch) VALUES (?, ?)", (archive, epoch))
                archived.append(archive)
            # The other user's membership and read mark: the room is gone for them too.
            conn.execute("DELETE FROM members WHERE room = ?", (room,))
            conn.execute("DELETE FROM reads WHERE room = ?", (room,))
    return Removal(**{**asdict(plan), "archived_as": tuple(archived)})


def _note_removal(conn: sqlite3.Connection, key: str, dms: Collection[str], now_ms: int,
                  online: frozenset[str]) -> None:
    """The notices of ``key``'s removal (before its rows go), and none left for it."""
    display, bot = conn.execute("SELECT display, bot FROM users WHERE name = ?",
                                (key,)).fetchone()
    # A pending request: on its list, and the target has no entry for it (neither added
    # it back nor blocked it).
    told = [(target, "") for (target,) in conn.execute(
        "SELECT c.name FROM contacts c JOIN users u ON u.name = c.name"
        " WHERE c.owner = ? AND c.in_list AND NOT EXISTS"
        " (SELECT 1 FROM contacts d WHERE d.owner = c.name AND d.name = c.owner)", (key,))]
    for room in dms:
        other = next((n for n in rules.dm_members(room) or () if n != key), None)
        if other and conn.execute("SELECT 1 FROM users WHERE name = ?", (other,)).fetchone():
            told.append((other, room))
    conn.execute("DELETE FROM notices WHERE name = ?", (key,))
    conn.executemany(
        "INSERT OR REPLACE INTO notices (name, subject, room, display, bot, created_ms)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        [(other, key, room, display, bot, now_ms) for other, room in told
         if other not in online])


def _dm_rooms(conn: sqlite3.Connection, key: str, recorded: bool) -> tuple[str, ...]:
    """Every DM room of ``key``: with a record, a membership or (unless ``recorded``)
    only messages."""
    rooms: set[str] = set()
    # ';' follows ':': a range on each primary key instead of a LIKE.
    queries = ["SELECT room FROM rooms WHERE room >= 'dm:' AND room < 'dm;'",
               "SELECT room FROM members WHERE name = ? AND room >= 'dm:' AND room < 'dm;'"]
    if not recorded:  # (a pass over every DM message: ~70 ms of CPU a million)
        queries.append("SELECT DISTINCT room FROM messages WHERE room >= 'dm:' AND room < 'dm;'")
    for sql in queries:
        params = (key,) if "?" in sql else ()
        rooms.update(room for (room,) in conn.execute(sql, params))
    return tuple(sorted(r for r in rooms if key in (rules.dm_members(r) or ())))


def count(conn: sqlite3.Connection, sql: str, *params: object) -> int:
    return int(conn.execute(sql, params).fetchone()[0])


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """BEGIN IMMEDIATE ... COMMIT on an autocommit connection; ROLLBACK on any error."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
