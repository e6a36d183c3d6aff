"""Store.search: words, newest first, only the rooms given, never a message hidden from
the reader. SQLite's index is a file of its own kept by a thread (searchindex.py): it
follows retention's deletes, catches up at start with what it missed, drops a room
that changed while the server was stopped, and turns edit and delete rows into an
update or a removal of their target."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import sqlite3
from collections.abc import Mapping
from pathlib import Path

import pytest

from cfm_common.frames import StoredMsg
from cfm_server.store import BadCursor, SqliteStore, Store, StoreError
from cfm_server.store.searchindex import index_path
from cfm_server.store.searchwords import fts5_query, words_of

DM = "dm:alice:bob"


def msg(room: str, seq: int, text: str, *, sender: str = "alice", ts: int = 0,
        hidden: bool | None = None, kind: str = "text") -> StoredMsg:
    return StoredMsg(room, seq, sender, text, ts or seq, kind, f"{room}-{seq}", hidden)


async def caught_up(store: Store, rooms: Mapping[str, int]) -> None:
    """Until the index holds every message of ``rooms`` up to their seqs (the SQLite
    index is a thread behind the commits). Waits, asserts nothing about time."""
    while store.search_behind(rooms):
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        store.when_indexed(rooms, functools.partial(done.set_result, None), 30.0)
        await done


async def put(store: Store, *msgs: StoredMsg) -> None:
    commits = [store.append(m) for m in msgs]
    await store.flush()
    for commit in commits:
        await commit  # a test's own mistake shows here, not as a missing match
    tops: dict[str, int] = {}
    for m in msgs:
        tops[m.room] = max(m.seq, tops.get(m.room, 0))
    await caught_up(store, tops)


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
    if not isinstance(store, SqliteStore):
        return 0
    conn = sqlite3.connect(index_path(store.path))
    try:
        return conn.execute("SELECT count(*) FROM docs_fts WHERE docs_fts MATCH ?",
                            (f'"{word}"',)).fetchone()[0]
    finally:
        conn.close()


async def test_retention_deletes_take_the_text_out_of_the_index(store: Store) -> None:
    await put(store, *(msg("#a", i, f"old words w{i}") for i in range(1, 5)))
    assert indexed(store, "w1") == (1 if isinstance(store, SqliteStore) else 0)
    await store.delete_before("#a", 4)
    # The cut reaches the index no later than a message committed after it.
    await put(store, msg("#a", 5, "later"))
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
        await put(store, msg("#b", 1, "other"))  # the indexer's start-up check is done
        assert found(store, "archived", (DM, "archived:1:dm:alice:bob")) == []
        assert indexed(store, "archived") == 0
        # A new DM of the same name never meets the old text.
        await put(store, msg(DM, 1, "fresh start"))
        assert found(store, "archived") == [] and found(store, "fresh") == [(DM, 1)]
    finally:
        await store.close()


async def test_a_database_indexed_by_none_is_indexed_at_start_newest_first(
    tmp_path: Path,
) -> None:
    """Messages stored without the index (search_index off, an older cfm, the index
    file deleted) are indexed when it starts, in ts order whatever the rooms."""
    path = tmp_path / "cfm.sqlite3"
    store = SqliteStore(path, search=False)
    await store.open()
    await put(store, msg("#a", 1, "older lunch", ts=10), msg("#b", 1, "newer lunch", ts=20),
              msg("#a", 2, "newest lunch", ts=30), msg("#b", 2, "a nudge", kind="nudge"))
    with pytest.raises(StoreError):
        store.search("alice", ("#a",), ["lunch"], None, 5)
    await store.close()
    assert not index_path(path).exists()
    expected = [("#a", 2), ("#b", 1), ("#a", 1)]
    for round_ in range(2):
        store = SqliteStore(path)
        await store.open()
        try:
            await caught_up(store, {"#a": 2, "#b": 2 + round_})
            assert found(store, "lunch") == expected
            if round_ == 0:
                await put(store, msg("#b", 3, "lunch after the upgrade", ts=40))
                expected.insert(0, ("#b", 3))
                assert found(store, "lunch") == expected
            assert found(store, "nudge") == []  # only text messages are indexed
        finally:
            await store.close()
        assert oct(index_path(path).stat().st_mode & 0o777) == "0o600"
        # The second round rebuilds it from nothing: a store without the index deletes
        # the file (it would keep text that deletes and edits never reach).
        store = SqliteStore(path, search=False)
        await store.open()
        await store.close()
        assert not index_path(path).exists()


async def test_edits_and_deletes_change_their_target_in_the_index(store: Store) -> None:
    """Change entries (docs/protocol.md "Message changes") are found as the message they
    changed: an edit's new text finds its target (never the entry), a deleted message is
    found by nothing, a reaction's emoji is no text; an edit sent across a block (hidden)
    changed nothing, so the target keeps its words."""
    await put(store, msg("#a", 1, "first draft"), msg("#a", 2, "regrettable words"),
              msg("#a", 3, "kept words"))
    await put(store,
              dataclasses.replace(msg("#a", 4, "final text"), change="edit", target=1),
              dataclasses.replace(msg("#a", 5, ""), change="delete", target=2),
              dataclasses.replace(msg("#a", 6, "words"), change="react", target=3,
                                  emoji="words"),
              dataclasses.replace(msg("#a", 7, "sneaky text", hidden=True), change="edit",
                                  target=3))
    assert found(store, "final") == [("#a", 1)]  # the target, not the edit entry
    assert found(store, "draft") == found(store, "regrettable") == []
    assert found(store, "words") == [("#a", 3)]  # not the deleted one, not the reaction
    assert found(store, "sneaky") == []
    if isinstance(store, SqliteStore):
        assert indexed(store, "draft") == indexed(store, "regrettable") == 0


async def test_hostile_text_is_only_words(store: Store) -> None:
    await put(store, msg("#a", 1, 'say "NEAR" AND OR NOT * col:umn ^x'))
    for text in ('"NEAR"', "AND", "OR NOT", "col:umn", "x*", '"', "NEAR(say x, 3)"):
        words = words_of(text)
        store.search("alice", ("#a",), words, None, 5)  # never raises
    assert found(store, "near and or not") == [("#a", 1)]
    assert found(store, "x " * 100) == [("#a", 1)]
