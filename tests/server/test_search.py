"""Search over a real server (issue 16): the rooms and DMs the user is a member of now,
newest first, paged by the answer's ``next``; never a room left or not joined, a DM of
others, or a DM message hidden by a block; retention's deletes are not found; hostile
text answers cleanly; its own rate bucket."""

from __future__ import annotations

import itertools
import sqlite3
from typing import Any

import pytest

from cfm_server import retention
from cfm_server.server import DB_FILE
from cfm_server.store.searchindex import index_path
from tests.wire import WireClient, signed_in

# The rules are the hub's; each store only finds words: both stores run them.
STORES = pytest.mark.parametrize("store", ["sqlite", "memory"])
# And each against two cluster nodes (tests/modes.py): the same rules, the node's own
# index (cfm_server/cluster/search.py; its own cases in tests/cluster/test_search.py).
pytestmark = pytest.mark.both_modes


async def _join(client: WireClient, room: str) -> None:
    await client.send({"t": "join", "room": room})
    await client.recv_until("joined", room=room)


async def _say(client: WireClient, text: str, *, room: str | None = None,
               to: str | None = None) -> int:
    frame: dict[str, Any] = {"t": "say", "text": text, "id": f"s{len(client.seen)}"}
    frame.update({"room": room} if room is not None else {"to": to})
    await client.send(frame)
    return (await client.recv_until("ack", id=frame["id"]))["seq"]


async def _search(client: WireClient, text: str, *, settled: bool = True,
                  **keys: Any) -> dict[str, Any]:
    """The answer to one search; with ``settled``, asked again while it says the index
    was ``behind`` (a loaded machine may hold the nice-19 indexer past the server's
    wait: the protocol's answer to that is to try again)."""
    while True:
        rid = f"q{len(client.seen)}"
        await client.send({"t": "search", "text": text, "id": rid, **keys})
        while True:
            frame = await client.recv()
            if frame.get("ref") == rid:
                break
        if not (settled and frame.get("behind")):
            return frame


def _where(answer: dict[str, Any]) -> list[tuple[str, int]]:
    """(room, seq) of each hit, checked newest first: ts never rises, and a room's own
    messages come in descending seq. (Messages of different rooms stored in the same
    millisecond may come in either order: the index orders by ts.)"""
    msgs = answer["msgs"]
    assert all(a["ts"] >= b["ts"] for a, b in itertools.pairwise(msgs)), msgs
    for room in {m["room"] for m in msgs}:
        seqs = [m["seq"] for m in msgs if m["room"] == room]
        assert seqs == sorted(seqs, reverse=True), msgs
    return [(m["room"], m["seq"]) for m in msgs]


@STORES
async def test_finds_own_and_others_messages_in_rooms_and_dms_newest_first(
    server_factory, store: str,
) -> None:
    server = await server_factory(store=store)
    async with signed_in(server.url, "alice") as alice, signed_in(server.url, "bob") as bob:
        for c in (alice, bob):
            await _join(c, "#food")
        await _say(alice, "lunch on Friday?", room="#food")
        await _say(bob, "Friday lunch works", room="#food")
        await _say(bob, "about that lunch: friday noon", to="alice")
        await _say(alice, "dinner instead", room="#food")
        answer = await _search(alice, "friday LUNCH")
        assert answer["t"] == "search" and answer["more"] is False and "next" not in answer
        assert sorted(_where(answer)) == [("#food", 1), ("#food", 2), ("dm:alice:bob", 1)]
        dm = next(m for m in answer["msgs"] if m["room"] == "dm:alice:bob")
        assert dm["from"] == "bob" and dm["text"] == "about that lunch: friday noon"
        assert _where(await _search(alice, "lunch", room="#food")) == [("#food", 2),
                                                                        ("#food", 1)]
        assert _where(await _search(bob, "friday", room="dm:alice:bob")) == [
            ("dm:alice:bob", 1)]


@STORES
async def test_pages_have_no_duplicates_and_no_gaps(
    server_factory, store: str,
) -> None:
    server = await server_factory(store=store)
    async with signed_in(server.url, "alice") as alice:
        await _join(alice, "#a")
        await _join(alice, "#b")
        said = []
        for i in range(13):
            room = "#a" if i % 3 else "#b"
            said.append((room, await _say(alice, f"tick number {i}", room=room)))
        seen: list[tuple[str, int]] = []
        before = None
        pages = 0
        while True:
            keys: dict[str, Any] = {"limit": 4}
            if before is not None:
                keys["before"] = before
            answer = await _search(alice, "tick", **keys)
            pages += 1
            seen += _where(answer)
            if not answer["more"]:
                assert "next" not in answer
                break
            before = answer["next"]
        # Every message once; newest first across the pages too (each page is checked
        # by _where; the cursor continues below the last one given).
        assert sorted(seen) == sorted(said) and len(set(seen)) == len(seen) and pages == 4
        for room in ("#a", "#b"):
            assert [q for r, q in seen if r == room] == [q for r, q in reversed(said)
                                                          if r == room]


@STORES
async def test_never_a_room_left_or_not_joined_or_a_dm_of_others(
    server_factory, store: str,
) -> None:
    server = await server_factory(store=store)
    async with (
        signed_in(server.url, "alice") as alice,
        signed_in(server.url, "bob") as bob,
        signed_in(server.url, "carol") as carol,
    ):
        await _join(bob, "#secret")
        await _say(bob, "needle in the secret room", room="#secret")
        await _say(bob, "needle for carol only", to="carol")
        await _join(alice, "#gone")
        await _say(alice, "needle before leaving", room="#gone")
        await alice.send({"t": "leave", "room": "#gone"})
        await alice.recv_until("left")
        await _join(alice, "#lobby2")
        await _say(alice, "needle I may see", room="#lobby2")

        assert _where(await _search(alice, "needle")) == [("#lobby2", 1)]
        for room, code in (("#secret", "not_member"), ("#gone", "not_member"),
                           ("#nowhere", "no_such_room"), ("dm:bob:carol", "forbidden")):
            answer = await _search(alice, "needle", room=room)
            assert answer["t"] == "error" and answer["code"] == code, (room, answer)
        assert _where(await _search(carol, "needle")) == [("dm:bob:carol", 1)]
        assert sorted(_where(await _search(bob, "needle"))) == [("#secret", 1),
                                                                ("dm:bob:carol", 1)]


@STORES
async def test_a_message_hidden_by_a_block_is_never_found_by_its_text(
    server_factory, store: str,
) -> None:
    server = await server_factory(store=store)
    async with signed_in(server.url, "alice") as alice, signed_in(server.url, "bob") as bob:
        await _say(alice, "hello bob", to="bob")
        await alice.send({"t": "contact", "op": "block", "name": "bob"})
        await alice.recv_until("contact", op="block")
        await _say(bob, "secret plea hello", to="alice")
        assert _where(await _search(alice, "plea")) == []
        assert _where(await _search(alice, "hello")) == [("dm:alice:bob", 1)]
        # Still hidden after an unblock; its sender finds it, plain.
        await alice.send({"t": "contact", "op": "unblock", "name": "bob"})
        await alice.recv_until("contact", op="unblock")
        assert _where(await _search(alice, "secret")) == []
        theirs = await _search(bob, "secret plea")
        assert _where(theirs) == [("dm:alice:bob", 2)]
        assert "hidden" not in theirs["msgs"][0]
        assert "secret plea" not in repr(alice.seen)


@pytest.mark.single_node("retention's cut in the SQLite file (tests/cluster: "
                         "test_the_index_skips_what_retention_trimmed_…)")
async def test_a_message_deleted_by_retention_is_not_found(server_factory) -> None:
    server = await server_factory(retention_bytes=25)
    async with signed_in(server.url, "alice") as alice:
        await _join(alice, "#r")
        for i in range(5):
            await _say(alice, f"keep{i} gone{i}", room="#r")
        await retention.prune_once(server.hub, server.config)
        found = _where(await _search(alice, "keep0"))
        assert found == []
        assert _where(await _search(alice, "keep4")) == [("#r", 5)]
        # The cut reaches the index file no later than a message said after it (a
        # search waits for that one): the words are gone from the file, not only hidden.
        await _say(alice, "later", room="#r")
        assert _where(await _search(alice, "later")) == [("#r", 6)]
        assert _indexed(server, "keep0") == _indexed(server, "gone2") == 0
        assert _indexed(server, "keep4") == 1


def _indexed(server: Any, word: str) -> int:
    """Index entries holding ``word``, read from the index file itself."""
    conn = sqlite3.connect(index_path(server.config.resolved_data_dir() / DB_FILE))
    try:
        return conn.execute("SELECT count(*) FROM docs_fts WHERE docs_fts MATCH ?",
                            (f'"{word}"',)).fetchone()[0]
    finally:
        conn.close()


@pytest.mark.single_node("locks the index file of the single-node indexer process")
async def test_a_search_waits_for_the_index_and_says_what_it_could_not_see(
    server_factory,
) -> None:
    """The index is written by a thread after the commits. A search waits (a moment)
    for it to hold the rooms' acked messages; if it cannot (here its file is locked by
    another program), the answer says how many messages it did not search."""
    server = await server_factory(search_burst=100, user_search_burst=100)
    async with signed_in(server.url, "alice") as alice:
        await _join(alice, "#w")
        await _say(alice, "indexed at once", room="#w")
        assert _where(await _search(alice, "indexed")) == [("#w", 1)]
        index = index_path(server.config.resolved_data_dir() / DB_FILE)
        blocker = sqlite3.connect(index, isolation_level=None)
        try:
            blocker.execute("BEGIN IMMEDIATE")  # the indexer's passes fail meanwhile
            await _say(alice, "stuck words", room="#w")
            await _say(alice, "more stuck words", room="#w")
            answer = await _search(alice, "stuck", settled=False)
            assert answer["t"] == "search" and answer["msgs"] == []
            assert answer["behind"] == 2
            assert _where(await _search(alice, "indexed", settled=False)) == [("#w", 1)]
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        # The indexer tries again and catches up (its retry may come after a search's
        # wait: _search asks again while the answer says it is behind).
        assert _where(await _search(alice, "stuck")) == [("#w", 3), ("#w", 2)]


async def test_search_turned_off_is_refused(server_factory) -> None:
    server = await server_factory(search_index=False)
    async with signed_in(server.url, "alice") as alice:
        answer = await _search(alice, "anything")
        assert answer["t"] == "error" and answer["code"] == "forbidden"
        assert "search_index" in answer["msg"]
    assert not index_path(server.config.resolved_data_dir() / DB_FILE).exists()


async def test_hostile_text_answers_cleanly(server_factory) -> None:
    server = await server_factory(search_burst=100, user_search_burst=100)
    async with signed_in(server.url, "alice") as alice:
        await _join(alice, "#h")
        await _say(alice, "NEAR AND OR NOT star quote", room="#h")
        for text in ('NEAR(a b, 2)', "star*", "AND OR NOT", "col:near", "^quote",
                     '"unclosed', "x" * 200, "a OR b " * 28, "-near", "né\u0301ar"):
            answer = await _search(alice, text)
            assert answer["t"] == "search", (text, answer)
        assert _where(await _search(alice, "near and or not")) == [("#h", 1)]
        for text in ('"', "(((", '" * ( ) : ^', "!!!"):
            answer = await _search(alice, text)
            assert answer["t"] == "error" and answer["code"] == "bad_frame", answer
            assert "no word" in answer["msg"]
        answer = await _search(alice, "x" * 201)
        assert answer["t"] == "error" and answer["code"] == "bad_frame"
        answer = await _search(alice, "near", before="not-a-cursor")
        assert answer["t"] == "error" and answer["code"] == "bad_frame"
        assert "cursor" in answer["msg"]


async def test_search_has_its_own_rate_bucket_advertised_in_welcome(server_factory) -> None:
    server = await server_factory(search_rate=0.01, search_burst=2)
    async with signed_in(server.url, "alice") as alice:
        welcome = next(f for f in alice.seen if f["t"] == "welcome")
        assert welcome["limits"]["rates"]["search"] == {"per_s": 0.01, "burst": 2}
        # and the user's bucket, which all of the user's sessions spend from together
        assert welcome["limits"]["user_rates"]["search"] == {"per_s": 2.0, "burst": 10}
        assert (await _search(alice, "one"))["t"] == "search"
        assert (await _search(alice, "two"))["t"] == "search"
        refused = await _search(alice, "three")
        assert refused["t"] == "error" and refused["code"] == "rate_limited"
        assert refused["retry_ms"] > 0
        # Another kind's bucket is untouched.
        await _join(alice, "#r")
        await alice.send({"t": "history", "room": "#r", "id": "h"})
        assert (await alice.recv_until("history"))["ref"] == "h"
