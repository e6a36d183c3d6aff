"""Disk use per room and per user, for ``cfm admin usage``: where the database's bytes
went, so an operator can see who fills it (and set ``retention_*``, see server.md).

Message bytes are counted as SQLite stores them, near enough: the UTF-8 text, the
sender, the client id and the room name, plus ``ROW_OVERHEAD`` for the row's integers
and headers. Indexes and free pages are not counted: the total is below the file size.
A cluster's messages are counted the same way, from its streams in Redis
(``cluster/admin_usage.py``), so both give one figure for the same messages.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import asdict, dataclass

# seq, ts, kind and the record and b-tree cell headers of one message row, roughly.
ROW_OVERHEAD = 24

# One message's bytes; message_bytes() below is the same sum in Python.
_BYTES = (f"coalesce(length(CAST(text AS BLOB)), 0) + length(sender) + length(room)"
          f" + coalesce(length(client_id), 0) + {ROW_OVERHEAD}")


@dataclass(frozen=True, slots=True)
class Use:
    name: str  # a room, or a user's handle
    messages: int
    bytes: int

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Usage:
    rooms: list[Use]  # by bytes, largest first
    users: list[Use]  # messages each user sent, wherever, by bytes
    total_messages: int
    total_bytes: int

    def as_dict(self) -> dict[str, object]:
        return {"rooms": [r.as_dict() for r in self.rooms],
                "users": [u.as_dict() for u in self.users],
                "total_messages": self.total_messages, "total_bytes": self.total_bytes}


def usage(conn: sqlite3.Connection, top: int = 20) -> Usage:
    """The ``top`` rooms and users by the bytes of their messages (0: all of them)."""
    return summary(_grouped(conn, "room"), _grouped(conn, "sender"), top)


def summary(rooms: Iterable[Use], users: Iterable[Use], top: int) -> Usage:
    """``Usage`` of each room's and each sender's messages (in any order): ranked by
    bytes, largest first, the ``top`` of each kept (0: all); the totals are the rooms'."""
    rooms, users = _ranked(rooms), _ranked(users)
    total_messages = sum(u.messages for u in rooms)
    total_bytes = sum(u.bytes for u in rooms)
    if top:
        rooms, users = rooms[:top], users[:top]
    return Usage(rooms, users, total_messages, total_bytes)


def message_bytes(text: str, sender: str, room: str, client_id: str | None) -> int:
    """One message's bytes as ``_BYTES`` counts them in SQL (``length()`` of a TEXT
    column counts characters; the text is counted as UTF-8 bytes), for a store read
    message by message (a cluster's streams: ``cluster/admin_usage.py``)."""
    return (len(text.encode()) + len(sender) + len(room) + len(client_id or "")
            + ROW_OVERHEAD)


def _ranked(uses: Iterable[Use]) -> list[Use]:
    return sorted(uses, key=lambda u: (-u.bytes, u.name))


def _grouped(conn: sqlite3.Connection, column: str) -> list[Use]:
    rows = conn.execute(
        f"SELECT {column}, count(*), sum({_BYTES}) FROM messages GROUP BY {column}")
    return [Use(name, count, size) for name, count, size in rows]
