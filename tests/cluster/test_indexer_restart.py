"""A cluster node's search indexer SIGKILLed under a real ``cfm serve --redis`` (a real
redis-server): the node logs the death once, starts a new indexer on the same file a
second later and tells it every room it follows again, so that the entries stored
while no indexer ran (and those whose notes went down the dead one's pipe) are read
from the streams and found (cfm_server/childwatch.py, cluster/search.py)."""

from __future__ import annotations

from pathlib import Path

import psutil

from tests.cluster.test_search import new_history, old_history
from tests.server.indexer_kill import kill_and_find
from tests.server.serve_proc import serve
from tests.server.test_search import _join, _say, _search, _where
from tests.wire import eventually, signed_in

INDEX = "search-k1.sqlite3"


async def test_a_killed_indexer_is_started_again_and_catches_up(redis, tmp_path: Path
                                                                ) -> None:
    async with serve("--redis", redis.url, "--node-id", "k1", "--no-rate-limits",
                     "--data-dir", str(tmp_path / "k1")) as node:
        await kill_and_find(node, INDEX)


async def test_the_new_indexer_is_told_every_room_the_dead_one_was(nodes) -> None:
    """The notes the dead indexer had in its pipe, unread, went with it: the node tells
    the new one every room it has noted, with its newest seq, unasked (no search needed
    to note them again: ``behind`` reaches 0)."""
    a = await nodes()
    search = a.node.search
    search._keeper.first_delay_s = 0.05
    async with signed_in(a.url, "alice") as alice, signed_in(a.url, "bob") as bob:
        for client in (alice, bob):
            await _join(client, "#w")
        first = await _say(alice, "needle one", room="#w")
        await eventually(lambda: search.behind({"#w": first}) == 0, timeout=30)
        indexer = psutil.Process(search._process.pid)
        indexer.suspend()  # SIGSTOP: the notes wait in its pipe, unread
        second = await _say(alice, "needle two", room="#w")
        dm = await _say(alice, "needle three", to="bob")
        # Delivered to the node, so noted (the node notes a message as it delivers it).
        await bob.recv_until("msg", room="#w", seq=second)
        await bob.recv_until("msg", room="dm:alice:bob", seq=dm)
        await eventually(lambda: not search._noted and not search._backlog)  # in the pipe
        indexer.kill()
        await eventually(lambda: search._keeper.restarts == 1
                         and search.behind({"#w": second, "dm:alice:bob": dm}) == 0,
                         timeout=30)
        assert _where(await _search(alice, "needle")) == [
            ("dm:alice:bob", dm), ("#w", second), ("#w", first)]


async def test_a_forget_that_died_with_the_indexer_is_told_again(
        broker_factory, redis, tmp_path: Path) -> None:
    """A room's history restarted (a new epoch) and the forget went down the pipe of an
    indexer that died before writing it: the file still holds the old history under
    the old count, so the node tells the new indexer the forget again; the new history
    is indexed from seq 1 and nothing of the old is left."""
    from cfm_server.cluster.search import ClusterSearch

    writer = await broker_factory()
    room = "#again"
    await old_history(writer, room)
    index = ClusterSearch(await broker_factory(), redis.url, tmp_path / "search.sqlite3")
    index.start()
    index._keeper.first_delay_s = 0.05
    try:
        index.note(room, 5)
        await eventually(lambda: index.behind({room: 5}) == 0, timeout=30)
        await new_history(redis.url, writer, room)
        assert index._process is not None
        indexer = psutil.Process(index._process.pid)
        indexer.suspend()  # SIGSTOP: the forget and the note wait in its pipe, unread
        index.forget(room)
        index.note(room, 2)
        await eventually(lambda: not index._noted and not index._forgot
                         and not index._backlog)
        indexer.kill()
        await eventually(lambda: index._keeper.restarts == 1
                         and index.behind({room: 2}) == 0, timeout=30)
        found = await index.search("bob", [room], ["needle"], None, 50)
        assert [(m.seq, m.text) for _, m in found] == [(2, "fresh needle 1"),
                                                      (1, "fresh needle 0")]
        assert index._reader is not None
        assert index._reader.execute("SELECT count(*) FROM docs").fetchone()[0] == 2

        # Killed again, the forget written this time: the next indexer takes the
        # room's count from the file, and its marks of the new history count as such.
        assert index._process is not None
        index._process.kill()
        await writer.append(room, "alice", "n2", "text", "fresh needle 2", 2002)
        index.note(room, 3)
        await eventually(lambda: index._keeper.restarts == 2
                         and index.behind({room: 3}) == 0, timeout=30)
        found = await index.search("bob", [room], ["needle"], None, 50)
        assert [m.seq for _, m in found] == [3, 2, 1]
    finally:
        await index.close()
