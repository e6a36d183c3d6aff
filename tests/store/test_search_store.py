"""Store.search: words, newest stored first, only the rooms given, never a message
hidden from the reader; the SQLite index follows deletes and moves, and a schema v3
database gains it with its old messages in it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from cfm_common.frames import StoredMsg
from cfm_server.store import BadCursor, SqliteStore, Store
from cfm_server.store.searchwords import fts5_query, words_of
from cfm_server.store.sqlite_schema import MIGRATIONS

DM = "dm:alice:bob"


def msg(room: str, seq: int, text: str, *, sender: str = "alice", ts: int = 0,
        hidden: bool | None = None) -> StoredMsg:
    return StoredMsg(room, seq, sender, text, ts or seq, "text", f"{room}-{seq}", hidden)


async def put(store: Store, *msgs: StoredMsg) -> None:
    commits = [store.append(m) for m in msgs]
    await store.flush()
    for commit in commits:
        await commit  # a test's own mistake shows here, not as a missing match


def found(store: Store, words: str, rooms: tuple[str, ...] = ("#a", "#b", DM), *,
          reader: str = "alice", before: str | None = None, limit: int = 50,
          ) -> list[tuple[str, int]]:
    return [(m.room, m.seq) for _, m in
            store.search(reader, rooms, words_of(words), before, limit)]


def test_words_are_letters_and_digits_folded() -> None:
    assert words_of('Héllo, "WORLD" NEAR(x*) foo_bar 42!') == [
        "hello", "world", "near", "x", "foo", "bar", "42"]
    assert words_of('" * () - : ^') == []
    assert fts5_query(["near", "and"]) == '"near" "and"'


async def test_finds_every_word_newest_first_in_the_rooms_given(store: Store) -> None:
    await put(store, msg("#a", 1, "lunch on Friday"), msg("#b", 1, "friday LUNCH?"),
              msg("#a", 2, "no lunch"), msg("#c", 1, "lunch friday elsewhere"),
              msg(DM, 1, "Friday, lunch, yes"))
    assert found(store, "friday lunch") == [(DM, 1), ("#b", 1), ("#a", 1)]
    assert found(store, "lunch", ("#a",)) == [("#a", 2), ("#a", 1)]
    assert found(store, "lunch", ()) == []
    assert found(store, "lunc") == []  # whole words


async def test_pages_by_cursor_without_gaps_or_repeats(store: Store) -> None:
    await put(store, *(msg("#a" if i % 2 else "#b", (i + 1) // 2, f"tick {i}")
                       for i in range(1, 24)))
    everything = found(store, "tick")
    assert len(everything) == 23
    seen: list[tuple[str, int]] = []
    before = None
    while True:
        page = store.search("alice", ("#a", "#b"), ["tick"], before, 5)
        seen += [(m.room, m.seq) for _, m in page]
        if len(page) < 5:
            break
        before = page[-1][0]
    assert seen == everything


async def test_a_hidden_message_is_found_only_by_its_sender(store: Store) -> None:
    await put(store, msg(DM, 1, "secret plea", sender="bob", hidden=True),
              msg(DM, 2, "plain plea", sender="bob"))
    assert found(store, "plea", reader="alice") == [(DM, 2)]
    assert found(store, "secret", reader="alice") == []
    assert found(store, "secret", reader="bob") == [(DM, 1)]


def indexed(store: Store, word: str) -> int:
    """How many index entries hold ``word`` (SQLite): text left behind is found here
    even where the join to the messages table would hide it."""
    conn = getattr(store, "_conn", None)
    if conn is None:
        return 0
    return conn.execute("SELECT count(*) FROM messages_fts WHERE messages_fts MATCH ?",
                        (f'"{word}"',)).fetchone()[0]


async def test_retention_deletes_take_the_text_out_of_the_index(store: Store) -> None:
    await put(store, *(msg("#a", i, f"old words w{i}") for i in range(1, 5)))
    assert indexed(store, "w1") == (1 if isinstance(store, SqliteStore) else 0)
    await store.delete_before("#a", 4)
    assert found(store, "old words") == [("#a", 4)]
    assert found(store, "w1") == []
    assert indexed(store, "w1") == indexed(store, "w3") == 0


async def test_a_cursor_the_store_never_gave_is_refused(store: Store) -> None:
    for bad in ("x", "-1", "1" * 30, "1.5", "\u00b2", "\u0663", "9" * 19, " 1"):
        with pytest.raises(BadCursor):
            store.search("alice", ("#a",), ["a"], bad, 5)


async def test_sqlite_archiving_a_dm_takes_its_text_out(tmp_path: Path) -> None:
    path = tmp_path / "cfm.sqlite3"
    store = SqliteStore(path)
    await store.open()
    await put(store, msg(DM, 1, "archived words"))
    await store.close()
    # What cfm admin remove-user does to the DMs of the user it removes.
    conn = sqlite3.connect(path)
    conn.execute("UPDATE messages SET room = 'archived:1:dm:alice:bob', client_id = NULL"
                 " WHERE room = ?", (DM,))
    conn.commit()
    conn.close()
    store = SqliteStore(path)
    await store.open()
    try:
        assert found(store, "archived", (DM, "archived:1:dm:alice:bob")) == []
        assert indexed(store, "archived") == 0
        # A new DM of the same name never meets the old text.
        await put(store, msg(DM, 1, "fresh start"))
        assert found(store, "archived") == [] and found(store, "fresh") == [(DM, 1)]
    finally:
        await store.close()


async def test_a_version_3_database_gains_the_index_with_its_old_messages(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(path)
    conn.executescript("".join(MIGRATIONS[:3]) + "PRAGMA user_version = 3;")
    rows = [("#a", 1, "alice", "older lunch", 10), ("#b", 1, "bob", "newer lunch", 20),
            ("#a", 2, "alice", "newest lunch", 30)]
    conn.executemany("INSERT INTO messages VALUES (?, ?, ?, ?, ?, 'text', NULL, NULL)", rows)
    conn.commit()
    conn.close()
    store = SqliteStore(path)
    await store.open()
    try:
        assert found(store, "lunch") == [("#a", 2), ("#b", 1), ("#a", 1)]
        await put(store, msg("#b", 2, "lunch after the upgrade", ts=40))
        assert found(store, "lunch")[0] == ("#b", 2)
    finally:
        await store.close()
    assert path.with_name("old.sqlite3.v3.bak").exists()


async def test_hostile_text_is_only_words(store: Store) -> None:
    await put(store, msg("#a", 1, 'say "NEAR" AND OR NOT * col:umn ^x'))
    for text in ('"NEAR"', "AND", "OR NOT", "col:umn", "x*", '"', "NEAR(say x, 3)"):
        words = words_of(text)
        store.search("alice", ("#a",), words, None, 5)  # never raises
    assert found(store, "near and or not") == [("#a", 1)]
    assert found(store, "x " * 100) == [("#a", 1)]
