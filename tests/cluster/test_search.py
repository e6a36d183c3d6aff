"""Search on a cluster (issues 16 + 12): two real nodes over one real redis-server, each
with its own index fed from the room streams (cfm_server/cluster/search.py). A message
sent on node A is found by a user on node B; edits and deletes made on either node are
what the other finds; a room left, never joined, or a DM of others is never searched;
a DM message hidden by a block is never found by its text."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.server.test_changes import _change
from tests.server.test_search import _join, _say, _search, _where
from tests.wire import signed_in


async def test_a_message_sent_on_one_node_is_found_on_the_other(nodes) -> None:
    a, b = await nodes(), await nodes()
    async with signed_in(a.url, "alice") as alice, signed_in(b.url, "bob") as bob:
        for client in (alice, bob):
            await _join(client, "#food")
        first = await _say(alice, "lunch on Friday?", room="#food")
        await _say(alice, "dinner instead", room="#food")
        dm = await _say(alice, "about that lunch: friday noon", to="bob")
        await bob.recv_until("msg", room="dm:alice:bob", seq=dm)
        answer = await _search(bob, "friday LUNCH")
        assert answer["t"] == "search" and answer["more"] is False
        assert sorted(_where(answer)) == [("#food", first), ("dm:alice:bob", dm)]
        hit = next(m for m in answer["msgs"] if m["room"] == "#food")
        assert hit["from"] == "alice" and hit["text"] == "lunch on Friday?"
        # And the other way round: bob's message, said on B, found on A.
        mine = await _say(bob, "friday works, lunch it is", room="#food")
        await alice.recv_until("msg", room="#food", seq=mine)
        assert (("#food", mine) in _where(await _search(alice, "lunch friday")))


async def test_a_room_the_node_never_followed_is_caught_up_when_it_is(nodes) -> None:
    """Carol's node followed no room with history before she signed in there: it reads
    the room's stream from the start then, and her first search finds it all."""
    a, b = await nodes(), await nodes()
    async with signed_in(a.url, "alice") as alice:
        await _join(alice, "#archive")
        seqs = [await _say(alice, f"note {i} about needles", room="#archive")
                for i in range(30)]
        await _say(alice, "nothing to see", room="#archive")
        async with signed_in(b.url, "carol") as carol:
            await _join(carol, "#archive")
            answer = await _search(carol, "needles", limit=50)
            assert [seq for _, seq in _where(answer)] == sorted(seqs, reverse=True)
            # Paged: the cursor of B's index, no duplicates and no gaps.
            got: list[int] = []
            before = None
            while True:
                keys: dict[str, Any] = {"limit": 7}
                if before is not None:
                    keys["before"] = before
                page = await _search(carol, "needles", **keys)
                got += [seq for _, seq in _where(page)]
                if not page["more"]:
                    break
                before = page["next"]
            assert got == sorted(seqs, reverse=True)
    # Each entry of the room was read once by B's index (the catch-up), not per search.
    assert b.node.search.indexed == len(seqs) + 1


async def test_edits_and_deletes_on_either_node_are_what_the_other_finds(nodes) -> None:
    a, b = await nodes(), await nodes()
    async with signed_in(a.url, "alice") as alice, signed_in(b.url, "bob") as bob:
        for client in (alice, bob):
            await _join(client, "#food")
        seq = await _say(alice, "meet at the bakery", room="#food")
        await bob.recv_until("msg", room="#food", seq=seq)
        assert _where(await _search(bob, "bakery")) == [("#food", seq)]

        edit = await _change(alice, "edit", "e1", seq, room="#food", text="meet at the cafe")
        assert edit["t"] == "ack"
        await bob.recv_until("msg", room="#food", seq=edit["seq"])
        assert _where(await _search(bob, "bakery")) == []
        found = await _search(bob, "cafe")
        assert _where(found) == [("#food", seq)]
        assert found["msgs"][0]["text"] == "meet at the cafe" and found["msgs"][0]["edited"]
        assert _where(await _search(alice, "cafe")) == [("#food", seq)]

        gone = await _change(alice, "delete", "d1", seq, room="#food")
        assert gone["t"] == "ack"
        await bob.recv_until("msg", room="#food", seq=gone["seq"])
        for client in (alice, bob):
            assert _where(await _search(client, "cafe")) == []
            assert _where(await _search(client, "meet")) == []


async def test_never_a_room_left_or_not_joined_or_a_dm_of_others(nodes) -> None:
    a, b = await nodes(), await nodes()
    async with (
        signed_in(a.url, "bob") as bob,
        signed_in(b.url, "alice") as alice,
        signed_in(a.url, "carol") as carol,
    ):
        await _join(bob, "#secret")
        await _say(bob, "needle in the secret room", room="#secret")
        await _say(bob, "needle for carol only", to="carol")
        await _join(alice, "#gone")
        await _join(bob, "#gone")
        gone = await _say(bob, "needle before leaving", room="#gone")
        await alice.recv_until("msg", room="#gone", seq=gone)
        assert _where(await _search(alice, "needle")) == [("#gone", gone)]
        await alice.send({"t": "leave", "room": "#gone"})
        await alice.recv_until("left")
        await _join(alice, "#lobby2")
        mine = await _say(alice, "needle I may see", room="#lobby2")

        assert _where(await _search(alice, "needle")) == [("#lobby2", mine)]
        for room, code in (("#secret", "not_member"), ("#gone", "not_member"),
                           ("#nowhere", "no_such_room"), ("dm:bob:carol", "forbidden")):
            answer = await _search(alice, "needle", room=room)
            assert answer["t"] == "error" and answer["code"] == code, (room, answer)
        assert _where(await _search(carol, "needle")) == [("dm:bob:carol", 1)]


async def test_a_message_hidden_by_a_block_is_never_found_by_its_text(nodes) -> None:
    a, b = await nodes(), await nodes()
    async with signed_in(a.url, "alice") as alice, signed_in(b.url, "bob") as bob:
        first = await _say(alice, "hello bob", to="bob")
        await bob.recv_until("msg", room="dm:alice:bob", seq=first)
        # Bob lists alice, so that her block shows on his node (she goes offline for
        # him): then node B knows of the block before bob says anything.
        await bob.send({"t": "contact", "op": "add", "name": "alice", "id": "c1"})
        await bob.recv_until("contact", ref="c1")
        await alice.recv_until("contact", op="added_you")
        await alice.send({"t": "contact", "op": "add", "name": "bob", "id": "c2"})
        await alice.recv_until("contact", ref="c2")
        await alice.send({"t": "contact", "op": "block", "name": "bob", "id": "c3"})
        await alice.recv_until("contact", ref="c3")
        gone = await bob.recv_until("presence", name="alice")
        assert gone["status"] == "offline", gone
        plea = await _say(bob, "secret plea hello", to="alice")
        assert _where(await _search(alice, "plea")) == []
        assert _where(await _search(alice, "hello")) == [("dm:alice:bob", first)]
        theirs = await _search(bob, "secret plea")
        assert _where(theirs) == [("dm:alice:bob", plea)]
        assert "hidden" not in theirs["msgs"][0]
        assert "secret plea" not in repr(alice.seen)


async def test_search_turned_off_on_a_node_is_refused(nodes) -> None:
    a = await nodes(search_index=False)
    async with signed_in(a.url, "alice") as alice:
        answer = await _search(alice, "anything")
        assert answer["t"] == "error" and answer["code"] == "forbidden"
        assert "search_index" in answer["msg"]


async def test_the_index_skips_what_retention_trimmed_and_reads_each_entry_once(
        broker_factory, redis, tmp_path) -> None:
    """Below the node: one ClusterSearch over a real stream. A range trimmed by retention
    (``XTRIM MINID``) before the index read it is skipped, and what lies above it is
    indexed; each entry is read once however often it is noted."""
    from redis.asyncio import Redis

    from cfm_server.cluster import keys
    from cfm_server.cluster.search import READ_PAGE, ClusterSearch

    writer = await broker_factory()
    room = "#old"
    total = READ_PAGE * 2 + 10
    for i in range(total):
        await writer.append(room, "alice", f"c{i}", "text", f"line {i} needle", 1000 + i)
    client = Redis.from_url(redis.url)
    try:
        # Everything below the last page is gone, as retention leaves a room.
        await client.xtrim(keys.room_log(room), minid=f"{READ_PAGE * 2 + 1}-0",
                          approximate=False)
    finally:
        await client.aclose()
    index = ClusterSearch(await broker_factory(), redis.url, tmp_path / "search.sqlite3")
    index.start()
    try:
        for _ in range(3):
            index.note(room, total)
        done = asyncio.get_running_loop().create_future()
        index.when_indexed({room: total}, lambda: done.set_result(None), 30.0)
        await done
        assert index.behind({room: total}) == 0
        assert index.indexed == 10
        found = await index.search("bob", [room], ["needle"], None, 50)
        assert [m.seq for _, m in found] == list(range(total, READ_PAGE * 2, -1))
    finally:
        await index.close()


async def test_while_redis_is_out_of_reach_a_search_gets_a_retryable_error(
        nodes, redis) -> None:
    """A hit is read from Redis before it is shown: with Redis gone the search is
    answered ``internal`` with ``retry_ms`` (never a stale or empty answer); once Redis
    is back, what was said while it was gone is indexed and found."""
    a = await nodes()
    async with signed_in(a.url, "alice") as alice:
        await _join(alice, "#lobby")
        first = await _say(alice, "needle one", room="#lobby")
        assert _where(await _search(alice, "needle")) == [("#lobby", first)]
        redis.kill()
        await alice.send({"t": "search", "text": "needle", "id": "gone"})
        error = await alice.recv_until("error", ref="gone")
        assert error["code"] == "internal" and error["retry_ms"] > 0
        await redis.start()  # the same dir: its AOF
        for attempt in range(200):
            await alice.send({"t": "say", "room": "#lobby", "text": "needle two",
                              "id": "again"})
            reply = await alice.recv()
            while reply["t"] not in ("ack", "error"):
                reply = await alice.recv()
            if reply["t"] == "ack":
                break
            assert attempt < 199 and reply["code"] == "internal", reply
            await asyncio.sleep(reply["retry_ms"] / 1000)
        second = reply["seq"]
        for attempt in range(200):
            answer = await _search(alice, "needle")
            if answer["t"] == "search":
                break
            assert attempt < 199 and answer["code"] == "internal", answer
            await asyncio.sleep(answer["retry_ms"] / 1000)
        assert _where(answer) == [("#lobby", second), ("#lobby", first)]


async def test_a_node_whose_indexer_died_answers_from_what_its_index_holds(nodes) -> None:
    """The index is kept by a process of the node's own (cluster/indexer.py), a child of
    the node. SIGKILLed, the node answers searches from what the index holds, saying
    how far ``behind`` it is, without waiting for an indexer that is gone. (The node
    starts a new one after a back-off, tests/cluster/test_indexer_restart.py: here the
    back-off is made long enough to see it gone.)"""
    import psutil

    a = await nodes()
    a.node.search._keeper.first_delay_s = 3600.0
    async with signed_in(a.url, "alice") as alice:
        await _join(alice, "#w")
        first = await _say(alice, "needle one", room="#w")
        assert _where(await _search(alice, "needle")) == [("#w", first)]
        process = a.node.search._process
        assert process is not None
        assert process.pid in {p.pid for p in psutil.Process().children(recursive=True)}
        process.kill()
        process.wait()
        await _say(alice, "needle two", room="#w")
        answer = await _search(alice, "needle", settled=False)
        assert answer["t"] == "search" and answer["behind"] == 1
        assert _where(answer) == [("#w", first)]


async def test_a_room_whose_history_restarted_is_indexed_again_from_its_start(
        broker_factory, redis, tmp_path) -> None:
    """A new epoch (Redis lost the room: its seqs start at 1 again): ``forget`` has the
    indexer drop what it held of the room, and the new history is indexed from seq 1."""

    from cfm_server.cluster.search import ClusterSearch

    async def indexed(index: ClusterSearch, room: str, top: int) -> None:
        done = asyncio.get_running_loop().create_future()
        index.when_indexed({room: top}, lambda: done.set_result(None), 30.0)
        await done
        assert index.behind({room: top}) == 0

    writer = await broker_factory()
    room = "#again"
    await old_history(writer, room)
    index = ClusterSearch(await broker_factory(), redis.url, tmp_path / "search.sqlite3")
    index.start()
    try:
        index.note(room, 5)
        await indexed(index, room, 5)
        await new_history(redis.url, writer, room)
        index.forget(room)
        index.note(room, 2)
        await indexed(index, room, 2)
        found = await index.search("bob", [room], ["needle"], None, 50)
        assert [(m.seq, m.text) for _, m in found] == [(2, "fresh needle 1"),
                                                      (1, "fresh needle 0")]
        assert index._reader is not None
        # Nothing of the old history is left in the index (the hits' read from Redis
        # would hide it from searches; the file must not keep it either).
        assert index._reader.execute("SELECT count(*) FROM docs").fetchone()[0] == 2
    finally:
        await index.close()
    assert (tmp_path / "search.sqlite3").exists()  # kept for the node's next start


async def old_history(writer: Any, room: str) -> None:
    """Five messages with "needle" in ``room``, through the broker ``writer``."""
    for i in range(5):
        await writer.append(room, "alice", f"o{i}", "text", f"old needle {i}", 1000 + i)


async def new_history(redis_url: str, writer: Any, room: str) -> None:
    """``room`` lost in Redis (its keys deleted: a new epoch, its seqs from 1 again),
    then two messages with "needle" in its new history."""
    from redis.asyncio import Redis

    from cfm_server.cluster import keys

    client = Redis.from_url(redis_url)
    try:
        await client.delete(keys.room_meta(room), keys.room_log(room),
                            keys.room_changes(room))
    finally:
        await client.aclose()
    for i in range(2):
        await writer.append(room, "alice", f"n{i}", "text", f"fresh needle {i}", 2000 + i)
