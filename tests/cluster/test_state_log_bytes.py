"""The shared records' log bounded in bytes (``state_log_bytes``, docs/cluster.md "Sizing
Redis"): every presence change of a user is an entry holding the whole user record, up
to ~1 KB with a long display name and personal message, so a log bounded in entries
(100,000) could hold ~83 MB of one user's changes. The log's cost is counted per entry
in Redis and the oldest entries go once it passes the budget; a node cut off through
more than the log holds reloads the snapshot and ends with every change.

Real redis-server; two real ``cfm serve --redis`` nodes for the flood, two brokers with
their shared records (as a node wires them) for the node cut off.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from redis.asyncio import Redis

from cfm_server.cluster import keys
from tests.cluster.helpers import wait_until
from tests.cluster.proxy import FaultyProxy
from tests.cluster.redis_proc import RedisProcess
from tests.cluster.test_state import Node, started_nodes
from tests.wire import signed_in

BUDGET = 65536
# Beyond the budget: a listpack node whose first entries were trimmed keeps its
# allocation until it empties (4 KiB, as Redis's stream-node-max-bytes), the entry just
# written is never trimmed, and the stream has a few hundred bytes of its own.
SLACK = 8192
FLOOD = {"presence_rate": 1000, "presence_burst": 1000, "user_presence_rate": 1000,
         "user_presence_burst": 1000}


@pytest.fixture
async def records(redis: RedisProcess) -> AsyncIterator[Callable[..., Awaitable[Node]]]:
    """Nodes' shared records alone (a broker each): ``await records(url=None, **settings)``."""
    async with started_nodes(redis) as factory:
        yield factory


async def log_memory(url: str) -> tuple[int, int, int]:
    """The log's MEMORY USAGE (every node counted), its entries and its counted bytes."""
    client = Redis.from_url(url)
    try:
        log = keys.room_log(keys.STATE)
        used = await client.execute_command("MEMORY", "USAGE", log, "SAMPLES", "0")
        counted = await client.hget(keys.room_meta(keys.STATE), "bytes")
        return int(used), await client.xlen(log), int(counted or 0)
    finally:
        await client.aclose()


async def stored(url: str, psm: str) -> int:
    """The log's seq once alice's record in Redis holds ``psm`` (her node wrote it)."""
    client = Redis.from_url(url)
    try:
        for _ in range(1500):  # bounded: 15 s
            if psm.encode() in (await client.hget(keys.state_records(), "u:alice") or b""):
                return int(await client.hget(keys.room_meta(keys.STATE), "seq"))
            await asyncio.sleep(0.01)
        raise AssertionError(f"alice's psm {psm!r} never reached Redis")
    finally:
        await client.aclose()


async def test_a_flood_of_long_presence_changes_keeps_the_log_in_its_budget(
        nodes, redis) -> None:
    a = await nodes(state_log_bytes=BUDGET, **FLOOD)
    b = await nodes(state_log_bytes=BUDGET, **FLOOD)
    async with signed_in(a.url, "alice") as alice, signed_in(b.url, "bob") as bob:
        for me, other in ((alice, "bob"), (bob, "alice")):
            await me.send({"t": "contact", "op": "add", "name": other, "id": other})
            await me.recv_until("contact", ref=other)
        display = "😀" * 63
        for i in range(200):  # ~1 KB of log each: ~200 KB, three times the budget
            await alice.send({"t": "presence", "display": display + chr(0x1F600 + i % 50),
                              "psm": "🎉" * 124 + f"{i:04d}"})
        last = "🎉" * 124 + "0199"
        await bob.recv_until("presence", name="alice", psm=last)
        head = await stored(redis.url, last)
        used, entries, counted = await log_memory(redis.url)
        # The same presence again carries nothing new: no entry.
        await alice.send({"t": "presence", "display": display + chr(0x1F600 + 199 % 50),
                          "psm": last})
        await alice.send({"t": "presence", "psm": "done"})
        assert await stored(redis.url, "done") == head + 1
    assert counted <= BUDGET
    assert used <= BUDGET + SLACK, (used, entries)
    assert 0 < entries < 200  # trimmed, the newest kept


async def test_a_node_cut_off_past_the_trim_reloads_every_change(records, redis) -> None:
    """Trimming by bytes cuts deeper than 100,000 entries did: a node whose pub/sub was
    cut while the log moved past its position finds its next seqs gone and takes the
    records from the snapshot, every change included."""
    proxy = FaultyProxy(redis.port)
    await proxy.start()
    try:
        writer = await records(log_bytes=16384)
        reader = await records(proxy.url, log_bytes=16384, socket_timeout=1.0,
                             ping_interval=0.2, ping_timeout=0.5, backoff=(0.05, 0.2))
        await writer.state.put("u:gone", b"1")
        await writer.state.put("u:kept", b"1")
        await wait_until(lambda: reader.state.seq == 2, "the first changes")
        proxy.freeze()  # half-open: only the watchdog's ping notices
        big = "😀".encode() * 200
        for i in range(60):  # ~1 KB each: ~60 KB, almost four budgets
            await writer.state.put(f"u:user{i % 7}", big + b"%d" % i)
        await writer.state.delete("u:gone")
        await writer.state.put("u:kept", b"2")
        first = await writer.broker.batcher.call("XRANGE", keys.room_log(keys.STATE), "-", "+",
                                                 "COUNT", 1)
        assert int(first[0][0].split(b"-")[0]) > 3  # the reader's next seq is trimmed
        await wait_until(lambda: reader.state.records == writer.state.records,
                         "the reader's records reloaded")
        told: dict[str, bytes | None] = {}
        for change in reader.changes:
            told[change.key] = change.value
        assert told == {**writer.state.records, "u:gone": None}  # every change told
        await writer.state.put("u:after", b"x")  # and it follows the log again
        await wait_until(lambda: reader.state.records.get("u:after") == b"x", "a new change")
    finally:
        await proxy.close()


async def test_a_log_from_before_its_bytes_were_counted_is_dropped(records, redis) -> None:
    """A log an older version wrote (up to 100,000 entries, their bytes counted nowhere)
    goes at the first change: a count started under it would never shrink it. A node
    behind it reloads the snapshot."""
    writer = await records()
    for i in range(50):
        await writer.state.put(f"u:user{i}", b"x" * 500)
    await writer.broker.batcher.call("HDEL", keys.room_meta(keys.STATE), "bytes")
    await writer.state.put("u:new", b"1")
    used, entries, counted = await log_memory(redis.url)
    assert entries == 1
    assert 0 < counted < 100
    assert used < SLACK  # one listpack node, allocated whole
    late = await records()
    assert late.state.records == writer.state.records
