"""Hidden messages (private blocking): every store keeps the mark, and a database made
before the mark existed (schema v2) opens and keeps its messages visible."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from cfm_common.frames import StoredMsg
from cfm_server.store import Store
from cfm_server.store.sqlite import SqliteStore
from cfm_server.store.sqlite_schema import MIGRATIONS

ROOM = "dm:alice:bob"


def msg(seq: int, *, hidden: bool | None = None) -> StoredMsg:
    return StoredMsg(ROOM, seq, "bob", f"text {seq}", 1_700_000_000_000 + seq, "text",
                     f"b{seq}", hidden)


async def test_the_hidden_mark_round_trips(store: Store) -> None:
    written = [msg(1), msg(2, hidden=True), msg(3)]
    for m in written:
        store.append(m)
    await store.flush()
    assert store.history_after(ROOM, 0, 10) == written
    assert store.history_before(ROOM, None, 10) == written
    assert store.find_message("bob", "b2") == msg(2, hidden=True)
    assert store.find_message("bob", "b3") == msg(3)


async def test_a_version_2_database_gains_the_mark_and_keeps_its_messages(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(path)
    conn.executescript(MIGRATIONS[0] + MIGRATIONS[1] + "PRAGMA user_version = 2;")
    conn.execute("INSERT INTO messages VALUES (?, 1, 'bob', 'kept', 5, 'text', 'b1')", (ROOM,))
    conn.commit()
    conn.close()
    store = SqliteStore(path)
    await store.open()
    try:
        assert store.history_after(ROOM, 0, 10) == [
            StoredMsg(ROOM, 1, "bob", "kept", 5, "text", "b1")]
        await store.append(msg(2, hidden=True))
        assert store.history_after(ROOM, 1, 10) == [msg(2, hidden=True)]
    finally:
        await store.close()
