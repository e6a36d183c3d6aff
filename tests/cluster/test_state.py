"""The shared records (cfm_server/cluster/state.py) against a real redis-server: every
node sees every change once, in one order; conditions hold across nodes; a node that
starts mid-stream, loses its pub/sub connection or outlives a Redis restart ends where
Redis is."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from cfm_server.cluster import keys
from cfm_server.cluster.broker import Broker
from cfm_server.cluster.state import LOG_BYTES, Change, SharedState, parse_entry
from tests.cluster.helpers import wait_until
from tests.cluster.proxy import FaultyProxy
from tests.cluster.redis_proc import RedisProcess


class Node:
    """A broker and the shared records on it, as a cfm node would wire them."""

    def __init__(self, url: str, name: str, keep: int | None = None,
                 log_bytes: int = LOG_BYTES, **kwargs: Any) -> None:
        self.changes: list[Change] = []
        self.broker = Broker(url, node=name, on_message=self._message,
                             on_reset=self._reset, on_lost=self._lost, **kwargs)
        self.state = SharedState(self.broker, on_change=self.changes.append, keep=keep,
                                 log_bytes=log_bytes)

    def _lost(self, room: str) -> None:
        assert room == keys.STATE, room
        self.state.lost()

    def _message(self, room: str, seq: int, origin: str, msg: bytes) -> None:
        assert room == keys.STATE, room
        self.state.deliver(seq, origin, msg)

    def _reset(self, room: str, epoch: str) -> None:
        self.state.reset(epoch)

    async def start(self) -> Node:
        await self.broker.start()
        await self.state.load()
        return self

    async def close(self) -> None:
        await self.state.close()
        await self.broker.close()

    @property
    def seqs(self) -> list[int]:
        return [c.seq for c in self.changes]


@contextlib.asynccontextmanager
async def started_nodes(redis: RedisProcess) -> AsyncIterator[Callable[..., Awaitable[Node]]]:
    """``await factory(url=None, **settings)`` → one more started Node, closed at the end."""
    made: list[Node] = []

    async def factory(url: str | None = None, **kwargs: Any) -> Node:
        node = Node(url or redis.url, f"n{len(made) + 1}", **kwargs)
        made.append(node)
        return await node.start()

    try:
        yield factory
    finally:
        for node in made:
            await node.close()


@pytest.fixture
async def nodes(redis: RedisProcess) -> AsyncIterator[Callable[..., Awaitable[Node]]]:
    async with started_nodes(redis) as factory:
        yield factory


def test_entries_parse_and_refuse_what_is_not_one() -> None:
    assert parse_entry(3, "n1", b"p u:alice \x93a b") == Change(3, "u:alice", b"\x93a b", "n1")
    assert parse_entry(4, "n1", b"p k ") == Change(4, "k", b"", "n1")  # an empty value
    assert parse_entry(5, "n2", b"d c:alice:bob") == Change(5, "c:alice:bob", None, "n2")
    for bad in (b"", b"p", b"p key-without-value", b"d", b"d two words", b"x k v"):
        with pytest.raises(ValueError):
            parse_entry(1, "n1", bad)


async def test_a_change_on_one_node_reaches_every_node_once_in_one_order(nodes) -> None:
    a, b, c = await nodes(), await nodes(), await nodes()
    writes = [a.state.put("u:alice", b"1"), b.state.put("u:bob", b"2"),
              c.state.put("m:#lobby:alice", b""), a.state.put("u:alice", b"3"),
              b.state.delete("u:bob")]
    done = await asyncio.gather(*writes)
    assert [w.changed for w in done] == [True] * 5
    assert sorted(w.seq for w in done) == [1, 2, 3, 4, 5]
    for node in (a, b, c):
        await wait_until(lambda node=node: len(node.changes) == 5, f"{node.broker.node}")
        assert node.seqs == [1, 2, 3, 4, 5]
        assert node.state.records == {"u:alice": b"3", "m:#lobby:alice": b""}
    assert a.changes == b.changes == c.changes  # same changes, same order, once each


async def test_a_node_reads_its_own_change_as_soon_as_redis_answers(nodes) -> None:
    a = await nodes()
    written = await a.state.put("u:alice", b"v")
    # No wait for the published copy: applied when the reply settled.
    assert a.state.records["u:alice"] == b"v" and a.seqs == [written.seq]


async def test_a_put_of_the_same_value_is_not_logged(nodes) -> None:
    a = await nodes()
    first = await a.state.put("r:alice:#lobby", b"7")
    again = await a.state.put("r:alice:#lobby", b"7")
    gone = await a.state.delete("no-such-key")
    assert first.changed and not again.changed and not gone.changed
    assert again.seq == gone.seq == first.seq and a.seqs == [first.seq]


async def test_create_has_one_winner_across_nodes(nodes) -> None:
    a, b = await nodes(), await nodes()
    races = []
    for i in range(20):  # both nodes claim twenty handles in the same loop turn
        races += [a.state.create(f"u:user{i}", b"from-a"), b.state.create(f"u:user{i}", b"from-b")]
    done = await asyncio.gather(*races)
    for i in range(20):
        one, two = done[2 * i], done[2 * i + 1]
        assert [one.changed, two.changed].count(True) == 1, (one, two)
        loser = two if one.changed else one
        assert loser.refused and loser.value == (b"from-a" if one.changed else b"from-b")
    await wait_until(lambda: a.state.seq == b.state.seq == 20, "both at seq 20")
    assert a.state.records == b.state.records and len(a.state.records) == 20


async def test_a_count_never_passes_its_limit_wherever_it_is_counted(nodes) -> None:
    a, b = await nodes(), await nodes()
    tries = [node.state.create(f"u:{node.state.origin}{i}", b"x", "i:nonce1", 3)
             for i in range(5) for node in (a, b)]
    done = await asyncio.gather(*tries)
    assert sum(w.changed for w in done) == 3 and sum(w.used_up for w in done) == 7
    await wait_until(lambda: b.state.records.get("i:nonce1") == b"3", "the count at b")
    assert a.state.records["i:nonce1"] == b"3"
    # Exactly the records whose count was taken were made, on both nodes.
    for node in (a, b):
        await wait_until(lambda n=node: sum(k.startswith("u:") for k in n.state.records) == 3,
                         "three records")
    # A taken key counts nothing; no limit: counted.
    assert (await a.state.create("u:held", b"x")).changed
    taken = await a.state.create("u:held", b"y", "i:nonce2")
    assert taken.refused and "i:nonce2" not in a.state.records
    made = await a.state.create("u:fresh", b"y", "i:nonce2")
    assert made.changed and a.state.records["i:nonce2"] == b"1"


async def test_a_node_started_mid_stream_ends_where_redis_is(nodes) -> None:
    a = await nodes()
    for i in range(50):
        await a.state.put(f"u:early{i}", b"%d" % i)
    # Changes keep coming while the late node subscribes and reads the snapshot.
    writer = asyncio.create_task(_put_many(a.state, "u:during", 200))
    late = await nodes()
    await writer
    await wait_until(lambda: late.state.seq == a.state.seq == 250, "the late node at 250")
    assert late.state.records == a.state.records and len(late.state.records) == 250
    # What it got live (if the writer was not done by then) came in order after the
    # snapshot, with no gap, up to the last change.
    if late.seqs:
        assert late.seqs == list(range(late.seqs[0], 251)), late.seqs


async def _put_many(state: SharedState, prefix: str, n: int) -> None:
    for i in range(n):
        await state.put(f"{prefix}{i}", b"x")
        if i % 20 == 0:
            await asyncio.sleep(0)


async def test_changes_made_while_a_node_was_cut_off_arrive_after_it_reconnects(
        nodes, redis) -> None:
    proxy = FaultyProxy(redis.port)
    await proxy.start()
    try:
        writer = await nodes()
        reader = await nodes(proxy.url, socket_timeout=1.0, ping_interval=0.2,
                             ping_timeout=0.5, backoff=(0.05, 0.2))
        await writer.state.put("u:a", b"1")
        await wait_until(lambda: reader.seqs == [1], "the first change")
        connects = reader.broker.subscriber.connects
        proxy.freeze()  # half-open: only the watchdog's ping notices
        for i in range(2, 12):
            await writer.state.put(f"u:a{i}", b"%d" % i)
        await wait_until(lambda: reader.broker.subscriber.connects > connects, "a reconnect")
        await wait_until(lambda: reader.state.seq == 11, "the missed changes")
        assert reader.seqs == list(range(1, 12))
        assert reader.state.records == writer.state.records
    finally:
        await proxy.close()


async def test_the_log_keeps_its_last_entries_and_a_node_behind_them_reloads(
        nodes, redis) -> None:
    """The log is trimmed to its last ``keep`` entries (every read mark is one: untrimmed
    it grows for ever). A node cut off while more changes than that were made finds them
    gone from the log when it comes back, and takes them from the snapshot."""
    proxy = FaultyProxy(redis.port)
    await proxy.start()
    try:
        writer = await nodes(keep=5)
        reader = await nodes(proxy.url, keep=5, socket_timeout=1.0, ping_interval=0.2,
                             ping_timeout=0.5, backoff=(0.05, 0.2))
        await writer.state.put("u:a", b"1")
        await wait_until(lambda: reader.seqs == [1], "the first change")
        proxy.freeze()  # half-open: only the watchdog's ping notices
        for i in range(2, 22):
            await writer.state.put(f"u:a{i}", b"%d" % i)
        await writer.state.delete("u:a")
        assert await writer.broker.batcher.call("XLEN", keys.room_log(keys.STATE)) == 5
        await wait_until(lambda: reader.state.records == writer.state.records,
                         "the reader's records reloaded")
        assert reader.state.seq >= 22
        assert "u:a" in {c.key for c in reader.changes if c.value is None}  # told it went
        await writer.state.put("u:after", b"x")  # and it follows the log again
        await wait_until(lambda: reader.state.records.get("u:after") == b"x", "a new change")
    finally:
        await proxy.close()


async def test_acked_changes_survive_a_sigkill_of_redis(nodes, redis) -> None:
    a = await nodes()
    acked = []
    for i in range(30):
        acked.append(await a.state.put(f"u:user{i}", b"%d" % i))
    redis.kill()
    await redis.start()  # same dir, same port: the AOF (fsync always) is read back
    fresh = await nodes()
    assert fresh.state.records == {f"u:user{i}": b"%d" % i for i in range(30)}
    assert fresh.state.seq == acked[-1].seq == 30


async def test_a_log_lost_under_a_running_node_is_reloaded_from_the_snapshot(
        nodes, redis) -> None:
    a = await nodes()
    await a.state.put("u:old", b"1")
    await a.state.put("m:#x:old", b"")
    # Redis emptied (a restart without persistence, a FLUSHALL by hand): a new epoch.
    await a.broker.batcher.call("FLUSHALL")
    other = await nodes()
    await other.state.put("u:new", b"2")
    await wait_until(lambda: a.state.records == {"u:new": b"2"}, "the reload at a")
    deleted = {c.key for c in a.changes if c.value is None}
    assert {"u:old", "m:#x:old"} <= deleted  # the hub is told what is gone


def test_records_read_back_what_was_written_and_refuse_foreign_keys() -> None:
    from cfm_server.cluster import records
    from cfm_server.store.base import ContactRecord, UserRecord

    alice = UserRecord("alice", "ab" * 32, "Alice", "at work", "busy", False, 1700000000000)
    snapshot = {
        records.user_key("alice"): records.user_value(alice),
        records.contact_key("alice", "bob"): records.contact_value(
            ContactRecord("alice", "bob", True, False)),
        records.member_key("dm:alice:bob", "alice"): b"",  # a room name with colons
        records.read_key("alice", "dm:alice:bob"): records.count_value(12),
        records.invite_key("n0nce"): records.count_value(2),
    }
    parsed = records.parse(snapshot)
    assert parsed.users == {"alice": alice}
    assert parsed.contacts == [ContactRecord("alice", "bob", True, False)]
    assert parsed.members == [("dm:alice:bob", "alice")]
    assert parsed.reads == [("alice", "dm:alice:bob", 12)]
    assert parsed.invite_uses == {"n0nce": 2}
    for key, value in (("x:what", b""), ("u:bob", b"not msgpack \xc1"), ("r:alice", b"1"),
                       ("i:n", b"many")):
        with pytest.raises(ValueError, match="not one of cfm's"):
            records.parse({key: value})
