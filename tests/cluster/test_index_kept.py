"""A cluster node's search index file kept across the node's restarts (real
``cfm serve --redis`` processes over a real redis-server; cluster/indexfile.py): a
restarted node answers at once from what it indexed before and reads from Redis only
what was stored since; what changed while it was stopped (a delete, an edit, a room's
history restarted, retention, another cluster's Redis) is what it finds."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from tests.cluster.redis_proc import RedisProcess
from tests.cluster.test_search import new_history
from tests.server.index_faults import read_index, say
from tests.server.indexer_kill import lines_about
from tests.server.serve_proc import ServeProcess, serve
from tests.server.test_changes import _change
from tests.server.test_search import _join, _say, _search, _where
from tests.wire import eventually, signed_in


@contextlib.asynccontextmanager
async def node(redis_url: str, data_dir: Path, node_id: str = "k1"
               ) -> AsyncIterator[ServeProcess]:
    async with serve("--redis", redis_url, "--node-id", node_id, "--no-rate-limits",
                     "--data-dir", str(data_dir)) as server:
        yield server


def index_of(data_dir: Path, node_id: str = "k1") -> Path:
    return data_dir / f"search-{node_id}.sqlite3"


def entries_read(path: Path) -> int:
    """Stream entries the node's indexer read from Redis since the node started."""
    return int(read_index(path, "SELECT entries FROM stats")[0][0])


def texts(path: Path) -> list[str]:
    return sorted(str(text) for text, in read_index(path, "SELECT text FROM texts"))


async def test_a_restarted_node_answers_at_once_from_what_it_indexed_before(
        redis: RedisProcess, tmp_path: Path) -> None:
    data = tmp_path / "k1"
    async with node(redis.url, data) as server, signed_in(server.url, "alice") as alice:
        token = alice.token
        await _join(alice, "#w")
        seqs = [await _say(alice, f"needle {i}", room="#w") for i in range(30)]
        assert [seq for _, seq in _where(await _search(alice, "needle", limit=50))] \
            == seqs[::-1]
    async with node(redis.url, data) as server, \
            signed_in(server.url, "alice", token=token) as alice:
        answer = await _search(alice, "needle", limit=50, settled=False)
        assert answer["t"] == "search" and "behind" not in answer, answer
        assert [seq for _, seq in _where(answer)] == seqs[::-1]
        # Nothing was read from the streams again: the file held it all.
        assert entries_read(index_of(data)) == 0
        new = await say(alice, "needle after the restart", "#w")
        assert _where(await _search(alice, "restart")) == [("#w", new)]
        assert entries_read(index_of(data)) == 1  # only what was stored since


async def test_a_message_deleted_or_edited_while_the_node_was_down_is_found_as_it_is(
        redis: RedisProcess, tmp_path: Path) -> None:
    """Privacy: a message deleted while the node was stopped is not found after its
    restart, and its text leaves the index file once the catch-up read the delete."""
    data = tmp_path / "k1"
    async with node(redis.url, data) as server, signed_in(server.url, "alice") as alice:
        token = alice.token
        await _join(alice, "#w")
        secret = await _say(alice, "my secret needle", room="#w")
        plain = await _say(alice, "a plain needle", room="#w")
        assert sorted(_where(await _search(alice, "needle"))) == [("#w", secret),
                                                                 ("#w", plain)]
    # Changed on another node while k1 is stopped.
    async with node(redis.url, tmp_path / "k2", "k2") as other, \
            signed_in(other.url, "alice", token=token) as alice:
        assert (await _change(alice, "delete", "d1", secret, room="#w"))["t"] == "ack"
        edit = await _change(alice, "edit", "e1", plain, room="#w",
                             text="a plain needle in a haystack")
        assert edit["t"] == "ack"
    async with node(redis.url, data) as server, \
            signed_in(server.url, "alice", token=token) as alice:
        assert _where(await _search(alice, "secret")) == []
        assert _where(await _search(alice, "needle")) == [("#w", plain)]
        assert _where(await _search(alice, "haystack")) == [("#w", plain)]
        index = index_of(data)
        # The catch-up read the two change entries, not the room again.
        assert entries_read(index) == 2
        assert texts(index) == ["a plain needle in a haystack"]


async def test_a_room_whose_history_restarted_while_the_node_was_down_is_indexed_again(
        redis: RedisProcess, broker_factory, tmp_path: Path) -> None:
    """Redis lost the room (its keys deleted: a new epoch, seqs from 1 again) while the
    node was stopped: its old rows go, its new history is indexed from seq 1; another
    room, unchanged, is not read again."""
    data = tmp_path / "k1"
    async with node(redis.url, data) as server, signed_in(server.url, "alice") as alice:
        token = alice.token
        for room in ("#again", "#same"):
            await _join(alice, room)
        for i in range(5):
            await _say(alice, f"old needle {i}", room="#again")
        kept = [await _say(alice, f"kept needle {i}", room="#same") for i in range(10)]
        assert len(_where(await _search(alice, "needle", limit=50))) == 15
    await new_history(redis.url, await broker_factory(), "#again")
    async with node(redis.url, data) as server, \
            signed_in(server.url, "alice", token=token) as alice:
        answer = await _search(alice, "fresh")
        assert _where(answer) == [("#again", 2), ("#again", 1)]
        assert [m["text"] for m in answer["msgs"]] == ["fresh needle 1", "fresh needle 0"]
        assert _where(await _search(alice, "old")) == []
        assert [seq for room, seq in _where(await _search(alice, "kept", limit=50))
                if room == "#same"] == kept[::-1]
        index = index_of(data)
        assert entries_read(index) == 2  # the new history; #same was not read again
        assert not [text for text in texts(index) if text.startswith("old")]


async def test_a_file_from_another_cluster_is_made_again_once(tmp_path: Path) -> None:
    """The same data dir and node id on another Redis: the file is made again, with one
    line saying why; nothing of the first cluster's rooms is left in it."""
    data = tmp_path / "k1"
    first, second = RedisProcess(tmp_path / "r1"), RedisProcess(tmp_path / "r2")
    await first.start()
    await second.start()
    try:
        async with node(first.url, data) as server, \
                signed_in(server.url, "alice") as alice:
            await _join(alice, "#w")
            await _say(alice, "needle of the first cluster", room="#w")
            assert len(_where(await _search(alice, "needle"))) == 1
        async with node(second.url, data) as server:
            async with signed_in(server.url, "alice") as alice:
                token = alice.token
                await _join(alice, "#w")
                await say(alice, "needle of the second cluster", "#w")
                answer = await _search(alice, "needle")
                assert [m["text"] for m in answer["msgs"]] == ["needle of the second cluster"]
                assert texts(index_of(data)) == ["needle of the second cluster"]
            assert len(lines_about(server, "another cluster")) == 1
        async with node(second.url, data) as server:  # kept this time
            async with signed_in(server.url, "alice", token=token) as alice:
                assert len(_where(await _search(alice, "needle", settled=False))) == 1
                assert entries_read(index_of(data)) == 0
            assert lines_about(server, "making it again") == []
    finally:
        await first.stop()
        await second.stop()


async def test_an_unreadable_or_older_file_is_made_again_with_one_line(
        redis: RedisProcess, tmp_path: Path) -> None:
    data = tmp_path / "k1"
    data.mkdir(mode=0o700)
    index_of(data).write_bytes(b"not a database at all" * 100)
    async with node(redis.url, data) as server:
        await server.wait_line(r"search index .* cannot be read .*: making it again")
        async with signed_in(server.url, "alice") as alice:
            await _join(alice, "#w")
            seq = await _say(alice, "needle", room="#w")
            assert _where(await _search(alice, "needle")) == [("#w", seq)]
    # A file of the version before (made afresh at each start, no epochs): made again.
    index = index_of(data)
    conn = sqlite3.connect(index)
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    async with node(redis.url, data) as server:
        await server.wait_line(r"search index .* is of another version \(1, this one "
                               r"makes 2\): making it again")
        assert len(lines_about(server, "making it again")) == 1


async def test_retention_and_rooms_gone_while_the_node_was_down_leave_no_rows(
        broker_factory, redis: RedisProcess, tmp_path: Path) -> None:
    await rows_of_trimmed_and_gone_rooms_go(redis.url, broker_factory, tmp_path)


async def rows_of_trimmed_and_gone_rooms_go(url: str, broker_factory: Any, tmp_path: Path
                                            ) -> None:
    """Below the node: an index kept by one ClusterSearch, then a second one on the same
    file (the node's next start). Rows below a room's first kept entry (retention's
    XTRIM) and the rows of a room gone from Redis are dropped at the indexer's start,
    noted or not, and so are those of a room rolled back (Redis restored from an older
    copy: its head below the mark, its next seqs given again to other messages); an
    unchanged room's rows stay, and nothing is read again. (Also on a Redis Cluster:
    test_redis_cluster.py.)"""
    from cfm_server.cluster import keys
    from cfm_server.cluster.search import ClusterSearch

    writer = await broker_factory(url)
    for i in range(20):
        await writer.append("#old", "alice", f"o{i}", "text", f"old needle {i}", 1000 + i)
        await writer.append("#gone", "alice", f"g{i}", "text", f"gone needle {i}", 1000 + i)
        await writer.append("#back", "alice", f"b{i}", "text", f"back needle {i}", 1000 + i)
    path = tmp_path / "search.sqlite3"

    async def indexed(index: ClusterSearch, rooms: dict[str, int]) -> None:
        for room, seq in rooms.items():
            index.note(room, seq)
        done = asyncio.get_running_loop().create_future()
        index.when_indexed(rooms, lambda: done.set_result(None), 30.0)
        await done
        assert index.behind(rooms) == 0

    index = ClusterSearch(await broker_factory(url), url, path)
    index.start()
    try:
        await indexed(index, {"#old": 20, "#gone": 20, "#back": 20})
    finally:
        await index.close()
    await writer.batcher.call("XTRIM", keys.room_log("#old"), "MINID", "11-0")
    for key in (keys.room_meta("#gone"), keys.room_log("#gone"), keys.room_changes("#gone")):
        await writer.batcher.call("DEL", key)
    await writer.batcher.call("XDEL", keys.room_log("#back"),
                              *(f"{seq}-0" for seq in range(11, 21)))
    await writer.batcher.call("XSETID", keys.room_log("#back"), "10-0", "ENTRIESADDED", 10,
                              "MAXDELETEDID", "0-0")
    await writer.batcher.call("HSET", keys.room_meta("#back"), "seq", 10)
    index = ClusterSearch(await broker_factory(url), url, path)
    index.start()
    try:
        def rows(room: str) -> list[int]:
            return [int(str(seq)) for seq, in read_index(
                path, f"SELECT seq FROM docs WHERE room = '{room}' ORDER BY seq")]

        await eventually(lambda: not rows("#gone") and not rows("#back")
                         and rows("#old")[0] == 11, timeout=30)
        assert rows("#old") == list(range(11, 21))
        assert sorted(read_index(path, "SELECT room, seq FROM rooms")) == [("#back", 0),
                                                                           ("#old", 20)]
        await indexed(index, {"#old": 20})
        found = await index.search("bob", ["#old"], ["needle"], None, 50)
        assert [m.seq for _, m in found] == list(range(20, 10, -1))
        assert index.indexed == 0
        await writer.append("#back", "alice", "b-new", "text", "other needle", 3000)
        await indexed(index, {"#back": 11})
        found = await index.search("bob", ["#back"], ["needle"], None, 50)
        assert [(m.seq, m.text) for _, m in found][:2] == [(11, "other needle"),
                                                           (10, "back needle 9")]
        assert index.indexed == 11
    finally:
        await index.close()


async def test_a_room_is_checked_against_its_epoch_when_the_node_follows_it(
        broker_factory, redis: RedisProcess, tmp_path: Path) -> None:
    """Below the node, the node's own part: when it follows a room (a subscription's
    head), a mark of the kept file under another epoch is not counted as indexed
    (``behind`` counts the whole new history) even before the indexer did anything —
    here it cannot reach Redis at all; a mark under the room's epoch is."""
    from cfm_server.cluster.search import ClusterSearch
    from tests.cluster.test_search import old_history

    writer = await broker_factory()
    await old_history(writer, "#again")
    await old_history(writer, "#same")
    path = tmp_path / "search.sqlite3"
    index = ClusterSearch(await broker_factory(), redis.url, path)
    index.start()
    try:
        for room in ("#again", "#same"):
            index.note(room, 5)
        await eventually(lambda: index.behind({"#again": 5, "#same": 5}) == 0, timeout=30)
    finally:
        await index.close()
    await new_history(redis.url, writer, "#again")
    again, same = await writer.head("#again"), await writer.head("#same")
    # An indexer that cannot reach Redis: only the node's own check can tell.
    index = ClusterSearch(await broker_factory(), "redis://127.0.0.1:9/0", path)
    index.start()
    try:
        index.follow("#same", same.seq, same.epoch)
        index.follow("#again", again.seq, again.epoch)
        assert index.behind({"#same": 5}) == 0
        assert index.behind({"#again": 2}) == 2
    finally:
        await index.close()
