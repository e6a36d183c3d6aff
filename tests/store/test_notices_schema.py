"""Schema v5: the notices of removed accounts (``notices``, domain/notices.py). A v4
database upgrades, keeps what it held (and a copy of itself as it was), and from then
on ``remove-user`` keeps what the users it concerns are told at their next sign-in."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from cfm_server.removal import remove_user
from cfm_server.store import NoticeRecord
from cfm_server.store.sqlite import SqliteStore
from cfm_server.store.sqlite_schema import MIGRATIONS

DM = "dm:alice:bob"


def v4_database(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.executescript("".join(MIGRATIONS[:4]) + "PRAGMA user_version = 4;")
    conn.executemany("INSERT INTO users VALUES (?, 'h', ?, '', 'online', 0, 1)",
                     [("alice", "Alice"), ("bob", "Bob"), ("carol", "Carol"), ("dave", "D")])
    # alice asked carol (pending) and dave (who added her back); she has a DM with bob.
    conn.executemany("INSERT INTO contacts VALUES (?, ?, 1, 0)",
                     [("alice", "carol"), ("alice", "dave"), ("dave", "alice")])
    conn.execute("INSERT INTO rooms VALUES (?, 'e1')", (DM,))
    conn.executemany("INSERT INTO members VALUES (?, ?)", [(DM, "alice"), (DM, "bob")])
    conn.execute("INSERT INTO messages (room, seq, sender, text, ts, kind) VALUES"
                 " (?, 1, 'alice', 'hi', 5, 'text')", (DM,))
    conn.commit()
    conn.close()


async def test_a_version_4_database_upgrades_to_5_and_keeps_notices_of_a_removal(
        tmp_path: Path) -> None:
    path = tmp_path / "cfm.sqlite3"
    v4_database(path)
    store = SqliteStore(path, search=False)
    await store.open()
    try:
        assert sorted(u.name for u in store.load_users()) == ["alice", "bob", "carol", "dave"]
        assert list(store.load_notices()) == []
    finally:
        await store.close()
    kept = sqlite3.connect(tmp_path / "cfm.sqlite3.v4.bak")
    try:
        assert kept.execute("PRAGMA user_version").fetchone()[0] == 4
    finally:
        kept.close()

    with SqliteStore(path).offline() as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 5
        done = remove_user(conn, "alice", 99)
        assert done.archived_as == ("archived:99:dm:alice:bob",)

    store = SqliteStore(path, search=False)
    await store.open()
    try:
        assert sorted(store.load_notices(), key=lambda n: n.name) == [
            NoticeRecord("bob", "alice", DM, "Alice", False),
            NoticeRecord("carol", "alice", "", "Alice", False)]
        await store.drop_notices("carol")
        assert [n.name for n in store.load_notices()] == ["bob"]
    finally:
        await store.close()
