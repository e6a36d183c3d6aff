"""The SQLite store's schema: its tables, their versions, and the open/closed mark.

The schema version is ``PRAGMA user_version``; ``MIGRATIONS`` takes a database from each
version to the next, keeping a whole copy of the older one first, so an upgrade can be
undone. ``PRAGMA application_id`` records whether a server has the database open, which
is how a database file that lost its WAL is told from a whole one (see APP_ID_OPEN).
``cfm_server/backup.py`` reads both, to check and to make copies.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
from pathlib import Path

from cfm_server.datadir import make_private_file
from cfm_server.store.base import StoreError

logger = logging.getLogger(__name__)

# MIGRATIONS[n] takes a database from schema version n to n + 1 (PRAGMA user_version).
# Append new ones; never edit a released one.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE users (
        name TEXT PRIMARY KEY,
        token_hash TEXT NOT NULL,
        display TEXT NOT NULL,
        psm TEXT NOT NULL,
        status TEXT NOT NULL,
        bot INTEGER NOT NULL,
        created_ms INTEGER NOT NULL
    ) WITHOUT ROWID;
    -- A room's latest seq is max(messages.seq): appending stays one INSERT.
    CREATE TABLE rooms (
        room TEXT PRIMARY KEY,
        epoch TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE members (
        room TEXT NOT NULL,
        name TEXT NOT NULL,
        PRIMARY KEY (room, name)
    ) WITHOUT ROWID;
    -- Clustered on (room, seq): a history page is one range scan.
    CREATE TABLE messages (
        room TEXT NOT NULL,
        seq INTEGER NOT NULL,
        sender TEXT NOT NULL,
        text TEXT NOT NULL,
        ts INTEGER NOT NULL,
        kind TEXT NOT NULL,
        client_id TEXT,
        PRIMARY KEY (room, seq)
    ) WITHOUT ROWID;
    -- Retries are found by (sender, client id); NULLs (nudges without id) never collide.
    CREATE UNIQUE INDEX messages_by_client_id ON messages (sender, client_id);
    CREATE TABLE contacts (
        owner TEXT NOT NULL,
        name TEXT NOT NULL,
        in_list INTEGER NOT NULL,
        blocked INTEGER NOT NULL,
        PRIMARY KEY (owner, name)
    ) WITHOUT ROWID;
    CREATE TABLE reads (
        name TEXT NOT NULL,
        room TEXT NOT NULL,
        seq INTEGER NOT NULL,
        PRIMARY KEY (name, room)
    ) WITHOUT ROWID;
    """,
    # v2: sign-ups counted per invite code (registration = "invite").
    """
    CREATE TABLE invite_uses (
        nonce TEXT PRIMARY KEY,
        used INTEGER NOT NULL
    ) WITHOUT ROWID;
    """,
    # v3: private blocking. 1 marks a DM message hidden from the room's other member (its
    # sender was blocked by them when it was sent); NULL, the rest, costs no byte.
    """
    ALTER TABLE messages ADD COLUMN hidden INTEGER;
    """,
    # v4: message changes (edit, delete, reply, reactions, mentions; docs/protocol.md).
    # On every row, NULL unless used: the seq it answers (reply), the members it mentions
    # (space-separated), and on a change entry its kind, its target seq and its emoji. On
    # a changed message its current state: when last edited, whether deleted (a
    # tombstone: its text, and its edit entries' texts, erased).
    """
    ALTER TABLE messages ADD COLUMN reply INTEGER;
    ALTER TABLE messages ADD COLUMN mentions TEXT;
    ALTER TABLE messages ADD COLUMN change_kind TEXT;
    ALTER TABLE messages ADD COLUMN target INTEGER;
    ALTER TABLE messages ADD COLUMN emoji TEXT;
    ALTER TABLE messages ADD COLUMN edited INTEGER;
    ALTER TABLE messages ADD COLUMN deleted INTEGER;
    -- A delete erases the text of its target's edit entries too. Partial: a plain
    -- message (no target) costs this index nothing.
    CREATE INDEX messages_by_target ON messages (room, target) WHERE target IS NOT NULL;
    -- Each user at most once per emoji per message; ``added`` (the react entry's seq)
    -- orders them. Clustered on (room, seq): a history page's reactions are one range.
    CREATE TABLE reactions (
        room TEXT NOT NULL,
        seq INTEGER NOT NULL,
        name TEXT NOT NULL,
        emoji TEXT NOT NULL,
        added INTEGER NOT NULL,
        PRIMARY KEY (room, seq, name, emoji)
    ) WITHOUT ROWID;
    -- Who is mentioned where: welcome counts a user's mentions past the read mark.
    CREATE TABLE mentions (
        room TEXT NOT NULL,
        seq INTEGER NOT NULL,
        name TEXT NOT NULL,
        PRIMARY KEY (room, seq, name)
    ) WITHOUT ROWID;
    CREATE INDEX mentions_by_name ON mentions (name, room, seq);
    -- A group room's moderators: its creator (creator = 1) and whoever the creator named.
    CREATE TABLE moderators (
        room TEXT NOT NULL,
        name TEXT NOT NULL,
        creator INTEGER NOT NULL,
        PRIMARY KEY (room, name)
    ) WITHOUT ROWID;
    """,
    # v5: what a user is told at their next sign-in of an account the operator removed
    # (``cfm admin remove-user``) while they were not online: for ``name``, that
    # ``subject`` is gone, with ``room`` '' its pending request withdrawn (a contact
    # remove), else the leave of the DM ``room``. ``display`` and ``bot``: the removed
    # account's, for the frame (domain/notices.py).
    """
    CREATE TABLE notices (
        name TEXT NOT NULL,
        subject TEXT NOT NULL,
        room TEXT NOT NULL,
        display TEXT NOT NULL,
        bot INTEGER NOT NULL,
        created_ms INTEGER NOT NULL,
        PRIMARY KEY (name, subject, room)
    ) WITHOUT ROWID;
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)


# Whether a server had the database open, in the header field SQLite leaves to the
# application (PRAGMA application_id). Set at open and copied into the database file at
# once; set back at a clean close, when SQLite copies the whole WAL in and deletes it.
# So "open" with no WAL file beside it is a database file whose WAL was lost — copied
# alone from a running server, or its WAL deleted after a crash — and the messages
# since its last checkpoint with it: the server refuses to start on it rather than
# serve it as if nothing were missing. 0 (older databases): unknown, never refused.
APP_ID_CLOSED = 0x63666D00  # "cfm\0"
APP_ID_OPEN = 0x63666D01


def migrate(conn: sqlite3.Connection, path: Path, version: int) -> None:
    """Take the database from schema ``version`` to SCHEMA_VERSION, one COMMIT a step."""
    if 0 < version < SCHEMA_VERSION:
        keep_before_migration(conn, path, version)
    for target in range(version + 1, SCHEMA_VERSION + 1):
        try:
            conn.executescript(
                f"BEGIN IMMEDIATE; {MIGRATIONS[target - 1]}; "
                f"PRAGMA user_version = {target}; COMMIT;"
            )
        except sqlite3.Error:
            if conn.in_transaction:
                conn.rollback()
            raise
        logger.info("store schema migrated to v%d: %s", target, path)


def keep_before_migration(conn: sqlite3.Connection, path: Path, version: int) -> None:
    """A whole copy of the database as it was (``cfm.sqlite3.v<N>.bak``, 0600) before
    an upgrade changes its schema in place, so going back to the older cfm is a
    ``cfm admin restore`` of it. Refuses the upgrade if the copy cannot be made."""
    backup = path.with_name(f"{path.name}.v{version}.bak")
    partial = backup.with_name(backup.name + ".partial")
    make_private_file(partial)
    try:
        target = sqlite3.connect(partial, isolation_level=None)
        try:
            conn.backup(target)
            target.execute("PRAGMA journal_mode=DELETE")
            target.execute(f"PRAGMA application_id = {APP_ID_CLOSED}")
        finally:
            target.close()
        os.replace(partial, backup)
    except (sqlite3.Error, OSError) as e:
        with contextlib.suppress(OSError):
            partial.unlink()
        raise StoreError(f"cannot keep a copy of {path} (schema v{version}) before "
                         f"upgrading it to v{SCHEMA_VERSION}: {e}; free some space and "
                         f"start again") from e
    logger.warning("upgrading %s from schema v%d to v%d; the database as it was is kept "
                   "in %s (restore it with cfm admin restore to go back to the older cfm)",
                   path, version, SCHEMA_VERSION, backup)


def mark_open(conn: sqlite3.Connection, path: Path) -> None:
    """Before the first write (not at open: a database that turns out corrupt while
    loading must be left untouched): mark the database file itself as open."""
    try:
        conn.execute(f"PRAGMA application_id = {APP_ID_OPEN}")
        # Into the database file now, not at the next checkpoint: that is the point.
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    except sqlite3.Error as e:
        logger.warning("cannot mark %s as open: %s", path, e)


def mark_closed(conn: sqlite3.Connection) -> None:
    """Before the last connection closes (which copies the WAL into the database file):
    the file is whole, whether the server closed it or an admin tool after a crash."""
    with contextlib.suppress(sqlite3.Error):
        if conn.in_transaction:
            conn.rollback()
        if conn.execute("PRAGMA application_id").fetchone()[0] == APP_ID_OPEN:
            conn.execute(f"PRAGMA application_id = {APP_ID_CLOSED}")
