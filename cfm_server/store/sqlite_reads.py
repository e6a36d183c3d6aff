"""The read side of ``SqliteStore``: the start-up snapshot, history pages, the dedupe
lookup and the retention cut.

Reads run on the store's one connection, on the event-loop thread, inside the open
batch when there is one, so they see the writes not yet committed: the hub reads what
it has just written. None of them writes; ``sqlite.py`` holds the writes and the
lifecycle, and opens the connection these use.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from cfm_common.frames import Reaction, StoredMsg
from cfm_server.store.base import (
    ContactRecord,
    NoticeRecord,
    RoomRecord,
    StoreError,
    UserRecord,
)
from cfm_server.store.idfilter import ClientIdFilter

# The first eight are every message's; the rest (schema v4, message changes) are NULL
# on most rows. ``_stored`` reads them in this order.
MESSAGE_COLUMNS = ("room, seq, sender, text, ts, kind, client_id, hidden, reply, mentions,"
                   " change_kind, target, emoji, edited, deleted")


class SqliteReads:
    """The ``Store`` reads, for SqliteStore, which sets these attributes at open."""

    path: Path
    _conn: sqlite3.Connection | None
    _client_ids: ClientIdFilter | None

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        conn = self._conn
        if conn is None:
            raise StoreError("the store is not open")
        try:
            return conn.execute(sql, params).fetchall()
        except sqlite3.Error as e:
            raise StoreError(f"{self.path}: read failed: {e}") from e

    def load_users(self) -> Iterable[UserRecord]:
        rows = self._query(
            "SELECT name, token_hash, display, psm, status, bot, created_ms FROM users")
        return [UserRecord(n, h, d, p, s, bool(b), c) for n, h, d, p, s, b, c in rows]

    def load_rooms(self) -> Iterable[RoomRecord]:
        rows = self._query(
            "SELECT room, coalesce((SELECT max(seq) FROM messages m WHERE m.room = r.room), 0),"
            " epoch FROM rooms r")
        rooms = [RoomRecord(room, seq, epoch) for room, seq, epoch in rows]
        known = {room.room for room in rooms}
        rooms += [RoomRecord(room, seq, "") for room, seq in self._rooms_with_messages()
                  if room not in known]
        return rooms

    def _rooms_with_messages(self) -> Iterable[tuple[str, int]]:
        """(room, latest seq) for each room in the messages table: one index seek per
        room (a skip scan), not a pass over every message."""
        room = ""
        while rows := self._query(
            "SELECT room, max(seq) FROM messages WHERE room ="
            " (SELECT min(room) FROM messages WHERE room > ?)", (room,)):
            room, seq = rows[0]
            if room is None:
                return
            yield room, seq

    def load_members(self) -> Iterable[tuple[str, str]]:
        return [(room, name) for room, name in self._query("SELECT room, name FROM members")]

    def load_contacts(self) -> Iterable[ContactRecord]:
        rows = self._query("SELECT owner, name, in_list, blocked FROM contacts")
        return [ContactRecord(o, n, bool(i), bool(b)) for o, n, i, b in rows]

    def load_reads(self) -> Iterable[tuple[str, str, int]]:
        return [(n, r, s) for n, r, s in self._query("SELECT name, room, seq FROM reads")]

    def load_invite_uses(self) -> dict[str, int]:
        return dict(self._query("SELECT nonce, used FROM invite_uses"))

    def load_moderators(self) -> Iterable[tuple[str, str, bool]]:
        return [(r, n, bool(c)) for r, n, c in
                self._query("SELECT room, name, creator FROM moderators")]

    def load_notices(self) -> Iterable[NoticeRecord]:
        return [NoticeRecord(n, s, r, d, bool(b)) for n, s, r, d, b in self._query(
            "SELECT name, subject, room, display, bot FROM notices ORDER BY name, created_ms,"
            " subject, room")]

    # --- reads -----------------------------------------------------------------------

    def find_message(self, sender: str, client_id: str) -> StoredMsg | None:
        client_ids = self._client_ids
        if client_ids is not None and not client_ids.may_hold((sender, client_id)):
            return None
        rows = self._query(
            f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE sender = ? AND client_id = ?",
            (sender, client_id))
        return _stored(rows[0]) if rows else None

    def history_before(self, room: str, before: int | None, limit: int) -> list[StoredMsg]:
        if limit <= 0:  # SQLite reads a negative LIMIT as "no limit"
            return []
        if before is None:
            rows = self._query(
                f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE room = ?"
                " ORDER BY seq DESC LIMIT ?", (room, limit))
        else:
            rows = self._query(
                f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE room = ? AND seq < ?"
                " ORDER BY seq DESC LIMIT ?", (room, before, limit))
        return self._with_reactions(room, [_stored(row) for row in reversed(rows)])

    def history_after(self, room: str, after: int, limit: int) -> list[StoredMsg]:
        if limit <= 0:
            return []
        rows = self._query(
            f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE room = ? AND seq > ?"
            " ORDER BY seq LIMIT ?", (room, after, limit))
        return self._with_reactions(room, [_stored(row) for row in rows])

    def get_message(self, room: str, seq: int) -> StoredMsg | None:
        rows = self._query(f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE room = ? AND seq = ?",
                           (room, seq))
        return self._with_reactions(room, [_stored(rows[0])])[0] if rows else None

    def _with_reactions(self, room: str, msgs: list[StoredMsg]) -> list[StoredMsg]:
        """``msgs`` (ascending seq) with their reactions: one range read of the table."""
        if not msgs:
            return msgs
        rows = self._query(
            "SELECT seq, emoji, name FROM reactions WHERE room = ? AND seq BETWEEN ? AND ?"
            " ORDER BY seq, added", (room, msgs[0].seq, msgs[-1].seq))
        if not rows:
            return msgs
        by_seq: dict[int, dict[str, list[str]]] = {}
        for seq, emoji, name in rows:
            by_seq.setdefault(seq, {}).setdefault(emoji, []).append(name)
        return [m if m.seq not in by_seq else dataclasses.replace(m, reactions=tuple(
                    Reaction(emoji, tuple(names)) for emoji, names in by_seq[m.seq].items()))
                for m in msgs]

    def unread_counts(self, user: str, room: str, after: int, cap: int) -> tuple[int, int]:
        unread = self._query(
            "SELECT count(*) FROM (SELECT 1 FROM messages WHERE room = ? AND seq > ?"
            " AND sender <> ? AND change_kind IS NULL AND deleted IS NULL AND hidden IS NULL"
            " LIMIT ?)", (room, after, user, cap))[0][0]
        mentions = self._query(
            "SELECT count(*) FROM (SELECT 1 FROM mentions WHERE name = ? AND room = ?"
            " AND seq > ? LIMIT ?)", (user, room, after, cap))[0][0] if unread else 0
        return unread, mentions

    # --- retention -------------------------------------------------------------------

    def retention_cut(self, room: str, min_ts: int | None,
                      max_bytes: int | None) -> tuple[int, int] | None:
        first, latest = self._query(
            "SELECT min(seq), max(seq) FROM messages WHERE room = ?", (room,))[0]
        if first is None or first == latest:
            return None
        cut = 0
        if min_ts is not None:
            row = self._query("SELECT min(seq) FROM messages WHERE room = ? AND ts >= ?",
                              (room, min_ts))[0][0]
            cut = latest if row is None else row
        if max_bytes is not None:
            # The newest seq whose message no longer fits, counting from the newest down.
            rows = self._query(
                "SELECT seq FROM (SELECT seq, sum(length(CAST(text AS BLOB)))"
                " OVER (ORDER BY seq DESC) AS kept FROM messages WHERE room = ?)"
                " WHERE kept > ? ORDER BY seq DESC LIMIT 1", (room, max_bytes))
            if rows:
                cut = max(cut, rows[0][0] + 1)
        cut = min(cut, latest)
        return (first, cut) if cut > first else None


def _stored(row: tuple[Any, ...]) -> StoredMsg:
    """A ``messages`` row as a StoredMsg (its ``hidden`` and ``deleted`` columns are NULL
    or 1, its ``mentions`` NULL or handles separated by spaces)."""
    hidden = None if row[7] is None else True
    if row[8] is None and row[9] is None and row[10] is None and row[13] is None \
            and row[14] is None:
        return StoredMsg(*row[:7], hidden)
    mentions = tuple(row[9].split()) if row[9] else None
    return StoredMsg(*row[:7], hidden, row[8], mentions, row[10], row[11], row[12], row[13],
                     None if row[14] is None else True)
