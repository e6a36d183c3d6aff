"""Message changes in the store (schema v4): every store applies a change entry to its
target in the entry's commit, keeps reactions, mentions and moderators, and answers
history with messages in their current state; a v3 database upgrades and keeps its
messages."""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path

from cfm_common.frames import Reaction, StoredMsg
from cfm_server.store import Store
from cfm_server.store.sqlite import SqliteStore
from cfm_server.store.sqlite_schema import MIGRATIONS, SCHEMA_VERSION

ROOM = "#lobby"
TS = 1_700_000_000_000


def msg(seq: int, text: str = "", *, sender: str = "alice", **keys: object) -> StoredMsg:
    return StoredMsg(ROOM, seq, sender, text or f"text {seq}", TS + seq, "text", f"{sender}{seq}",
                     **keys)  # type: ignore[arg-type]


def change(seq: int, kind: str, target: int, *, sender: str = "alice", text: str = "",
           emoji: str | None = None) -> StoredMsg:
    return StoredMsg(ROOM, seq, sender, text, TS + seq, "text", f"{sender}{seq}",
                     change=kind, target=target, emoji=emoji)


async def write(store: Store, *msgs: StoredMsg) -> None:
    for m in msgs:
        store.append(m)
    await store.flush()


async def test_an_edit_changes_the_text_and_marks_it_edited(store: Store) -> None:
    await write(store, msg(1, "helo"), change(2, "edit", 1, text="hello"))
    edited = dataclasses.replace(msg(1, "hello"), edited=TS + 2)
    assert store.history_after(ROOM, 0, 10) == [edited, change(2, "edit", 1, text="hello")]
    assert store.history_before(ROOM, None, 1) == [change(2, "edit", 1, text="hello")]
    assert store.get_message(ROOM, 1) == edited
    assert store.get_message(ROOM, 3) is None


async def test_a_delete_leaves_a_tombstone_and_erases_its_edits(store: Store) -> None:
    await write(store, msg(1, "secret", mentions=("bob",)), msg(2, "other"),
                change(3, "edit", 1, text="secret 2"), change(4, "react", 1, sender="bob",
                                                             emoji="x"),
                change(5, "edit", 2, text="other 2"), change(6, "delete", 1))
    page = store.history_after(ROOM, 0, 10)
    assert page[0] == dataclasses.replace(msg(1, "x"), text="", deleted=True)
    assert page[2] == change(3, "edit", 1, text="")
    assert page[4].text == "other 2"  # another message's edit is kept
    assert page[1] == dataclasses.replace(msg(2, "other 2"), edited=TS + 5)
    assert store.unread_counts("bob", ROOM, 0, 100) == (1, 0)  # message 2 only
    assert "secret" not in repr(store.find_message("alice", "alice1"))


async def test_reactions_once_per_user_and_emoji_in_the_order_given(store: Store) -> None:
    await write(store, msg(1), msg(2),
                change(3, "react", 1, sender="bob", emoji="+1"),
                change(4, "react", 1, sender="carol", emoji=":)"),
                change(5, "react", 1, sender="dave", emoji="+1"),
                change(6, "react", 1, sender="bob", emoji="+1"),  # a second time: no-op
                change(7, "react", 2, sender="bob", emoji="+1"),
                change(8, "unreact", 1, sender="dave", emoji="+1"),
                change(9, "react", 1, sender="dave", emoji="+1"))
    first, second = store.history_after(ROOM, 0, 2)
    assert first.reactions == (Reaction("+1", ("bob", "dave")), Reaction(":)", ("carol",)))
    assert second.reactions == (Reaction("+1", ("bob",)),)
    assert store.history_before(ROOM, 2, 1)[0].reactions == first.reactions
    await write(store, change(10, "unreact", 2, sender="bob", emoji="+1"))
    assert store.get_message(ROOM, 2) == msg(2)


async def test_unread_counts_skip_changes_own_hidden_and_deleted(store: Store) -> None:
    await write(store, msg(1, "@bob hi", mentions=("bob",)), msg(2, sender="bob"),
                msg(3, "@bob", mentions=("bob",), hidden=True), msg(4),
                change(5, "react", 4, sender="carol", emoji="x"),
                msg(6, "@bob @carol", sender="carol", mentions=("bob", "alice")))
    assert store.unread_counts("bob", ROOM, 0, 100) == (3, 2)  # 1, 4, 6; mentions 1, 6
    assert store.unread_counts("bob", ROOM, 1, 100) == (2, 1)
    assert store.unread_counts("bob", ROOM, 0, 2) == (2, 2)  # each count capped
    assert store.unread_counts("bob", ROOM, 0, 1) == (1, 1)
    assert store.unread_counts("alice", ROOM, 0, 100) == (2, 1)  # bob's and carol's
    assert store.unread_counts("bob", ROOM, 6, 100) == (0, 0)


async def test_retention_takes_reactions_and_mentions_along(store: Store) -> None:
    await write(store, msg(1, "@bob", mentions=("bob",)), msg(2),
                change(3, "react", 1, sender="bob", emoji="x"), msg(4))
    await store.delete_before(ROOM, 3)
    assert [m.seq for m in store.history_after(ROOM, 0, 10)] == [3, 4]
    assert store.unread_counts("bob", ROOM, 0, 100) == (1, 0)
    await write(store, msg(5))
    assert store.get_message(ROOM, 1) is None


async def test_moderators_round_trip(store: Store) -> None:
    await store.put_moderator("#games", "alice", True)
    await store.put_moderator("#games", "bob", False)
    await store.put_moderator("#chess", "carol", True)
    await store.remove_moderator("#games", "bob")
    assert sorted(store.load_moderators()) == [("#chess", "carol", True),
                                               ("#games", "alice", True)]


async def test_a_version_3_database_upgrades_to_4_and_keeps_its_messages(
    tmp_path: Path,
) -> None:
    assert SCHEMA_VERSION >= 4
    path = tmp_path / "cfm.sqlite3"
    conn = sqlite3.connect(path)
    conn.executescript(MIGRATIONS[0] + MIGRATIONS[1] + MIGRATIONS[2]
                       + "PRAGMA user_version = 3;")
    conn.execute("INSERT INTO messages VALUES (?, 1, 'bob', 'kept', 5, 'text', 'b1', NULL)",
                 (ROOM,))
    conn.execute("INSERT INTO messages VALUES (?, 2, 'bob', 'hid', 6, 'text', 'b2', 1)",
                 (ROOM,))
    conn.commit()
    conn.close()
    store = SqliteStore(path)
    await store.open()
    try:
        assert store.history_after(ROOM, 0, 10) == [
            StoredMsg(ROOM, 1, "bob", "kept", 5, "text", "b1"),
            StoredMsg(ROOM, 2, "bob", "hid", 6, "text", "b2", True)]
        await write(store, change(3, "edit", 1, sender="bob", text="kept, edited"),
                    change(4, "react", 1, emoji="x"))
        assert store.get_message(ROOM, 1) == StoredMsg(
            ROOM, 1, "bob", "kept, edited", 5, "text", "b1", edited=TS + 3,
            reactions=(Reaction("x", ("alice",)),))
    finally:
        await store.close()
    backup = sqlite3.connect(tmp_path / "cfm.sqlite3.v3.bak")
    try:
        assert backup.execute("PRAGMA user_version").fetchone()[0] == 3
        assert backup.execute("SELECT count(*) FROM messages").fetchone()[0] == 2
    finally:
        backup.close()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        conn.close()
