"""The append script through the broker: numbering, epoch, dedupe, history, batching."""

from __future__ import annotations

import asyncio

import msgpack
import pytest
from redis.asyncio import Redis

from cfm_common.codec import encode_msg
from cfm_common.frames import StoredMsg
from cfm_server.cluster import keys, scripts
from cfm_server.cluster.errors import ClusterError
from tests.cluster.helpers import seqs, wait_until

TS = 1_764_800_000_000


async def test_appends_number_the_room_gaplessly_under_one_epoch(broker_factory):
    broker = await broker_factory()
    done = [await broker.append("#lobby", "alice", f"c{i}", "text", f"hi {i}", TS + i)
            for i in range(3)]
    assert [d.seq for d in done] == [1, 2, 3]
    assert [d.ts for d in done] == [TS, TS + 1, TS + 2]
    assert len({d.epoch for d in done}) == 1 and not any(d.duplicate for d in done)
    head = await broker.head("#lobby")
    assert (head.seq, head.epoch) == (3, done[0].epoch)
    other = await broker.append("#other", "alice", "c0", "text", "x", TS)
    assert other.seq == 1 and other.epoch != done[0].epoch


async def test_a_room_never_written_has_no_head(broker_factory):
    broker = await broker_factory()
    head = await broker.head("#empty")
    assert (head.seq, head.epoch) == (0, None)
    assert await broker.history("#empty", limit=10) == []


async def test_a_retry_gets_the_original_seq_and_ts_and_is_stored_once(broker_factory, redis):
    a = await broker_factory()
    b = await broker_factory()  # the retry lands on another node
    first = await a.append("dm:alice:bob", "alice", "same-id", "text", "hello", TS)
    await a.append("dm:alice:bob", "bob", "same-id", "text", "other sender", TS + 5)
    again = await b.append("dm:alice:bob", "alice", "same-id", "text", "hello", TS + 999)
    assert (again.seq, again.ts, again.epoch) == (first.seq, first.ts, first.epoch)
    assert again.duplicate and not first.duplicate
    client = Redis.from_url(redis.url)
    try:
        assert await client.xlen(keys.room_log("dm:alice:bob")) == 2
    finally:
        await client.aclose()


async def test_a_nudge_without_id_is_never_deduplicated(broker_factory):
    broker = await broker_factory()
    one = await broker.append("dm:a1:b1", "a1", None, "nudge", "", TS)
    two = await broker.append("dm:a1:b1", "a1", None, "nudge", "", TS)
    assert (one.seq, two.seq) == (1, 2)


async def test_history_pages_after_and_before_in_ascending_seq(broker_factory):
    broker = await broker_factory()
    for i in range(1, 11):
        await broker.append("#r", "alice", f"c{i}", "text", f"m{i}", TS + i)
    after = await broker.history("#r", after=3, limit=4)
    assert [m.seq for m in after] == [4, 5, 6, 7]
    assert after[0] == StoredMsg("#r", 4, "alice", "m4", TS + 4, "text", "c4")
    assert [m.seq for m in await broker.history("#r", before=5, limit=3)] == [2, 3, 4]
    assert [m.seq for m in await broker.history("#r", limit=2)] == [9, 10]
    assert await broker.history("#r", before=1, limit=5) == []
    assert await broker.history("#r", after=10, limit=5) == []


@pytest.mark.parametrize("seq", [1, 127, 128, 255, 256, 65_535, 65_536, 2**32 - 1, 2**32,
                                 2**40 + 3])
async def test_the_stored_and_published_bytes_are_encode_msgs(broker_factory, redis, seq):
    """The script writes the seq into the node's pre-encoded frame exactly as msgpack does."""
    broker = await broker_factory()
    room = "#bytes"
    client = Redis.from_url(redis.url)
    try:
        if seq > 1:
            await client.hset(keys.room_meta(room), mapping={"seq": seq - 1, "epoch": "e1"})
            await client.xadd(keys.room_log(room), {"m": b"", "o": "x"}, id=f"{seq - 1}-0")
        await broker.subscribe(room)
        done = await broker.append(room, "alice", "id-1", "text", "héllo", TS)
        assert done.seq == seq
        want = encode_msg(StoredMsg(room, seq, "alice", "héllo", TS, "text", "id-1"))
        entry = await client.xrange(keys.room_log(room), f"{seq}-0", f"{seq}-0")
        assert entry[0][1][b"m"] == want
    finally:
        await client.aclose()
    await wait_until(lambda: seqs(broker.seen, room) == [seq], "the delivery")
    assert broker.seen[0][3] == want
    assert msgpack.unpackb(want)["seq"] == seq


def test_msg_parts_around_any_seq_equal_encode_msg():
    for client_id in ("abc", None):
        head, tail = scripts.msg_parts("dm:a:b", "a", "x" * 300, TS, "nudge", client_id)
        for seq in (0, 1, 127, 128, 300, 70_000, 2**33):
            want = encode_msg(StoredMsg("dm:a:b", seq, "a", "x" * 300, TS, "nudge", client_id))
            assert scripts.msg_bytes(head, seq, tail) == want


async def test_the_appends_of_one_loop_turn_share_one_pipeline(broker_factory):
    broker = await broker_factory()
    await broker.append("#warm", "alice", "w", "text", "warm up", TS)
    before = broker.batcher.pipelines
    done = await asyncio.gather(*(broker.append(f"#r{i % 5}", "bob", f"c{i}", "text", "x", TS)
                                  for i in range(200)))
    assert broker.batcher.pipelines == before + 1
    assert sorted(d.seq for d in done if d.seq) == sorted(
        [s for _ in range(5) for s in range(1, 41)])


async def test_a_redis_that_forgot_the_script_gets_it_again(broker_factory, redis):
    broker = await broker_factory()
    assert (await broker.append("#r", "alice", "a", "text", "x", TS)).seq == 1
    client = Redis.from_url(redis.url)
    try:
        await client.script_flush()  # as after a restart: EVALSHA now answers NOSCRIPT
        done = await asyncio.gather(*(broker.append("#r", "alice", f"b{i}", "text", "y", TS)
                                      for i in range(3)))
        assert [d.seq for d in done] == [2, 3, 4]
        assert await client.xlen(keys.room_log("#r")) == 4
    finally:
        await client.aclose()


async def _published_in_order(redis_url: str, channels: list[str], count: int) -> list[bytes]:
    """The first ``count`` publishes on ``channels``, as one subscriber got them: in the
    order Redis ran the commands that published them."""
    client = Redis.from_url(redis_url)
    pubsub = client.pubsub()
    try:
        await pubsub.subscribe(*channels)
        got: list[bytes] = []
        for _ in range(200):  # bounded: 200 × 50 ms
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.05)
            if message is not None:
                got.append(message["data"])
                if len(got) == count:
                    break
        return got
    finally:
        await pubsub.aclose()
        await client.aclose()


async def _one_turn_append_then_publish(broker, tag: str) -> None:
    appended = broker.submit("#r", "alice", tag, "text", tag, TS)
    published = broker.publish("after", tag.encode())  # the same loop turn: behind it
    await asyncio.gather(appended, published)


async def test_after_a_restart_the_scripts_are_loaded_ahead_of_the_turn_that_calls_them(
        broker_factory, redis):
    """A restarted Redis knows no script. The first turn on the new connection loads
    them ahead of its commands, so its append is not answered NOSCRIPT while the command
    made after it runs: the other nodes see the two in the order they were made."""
    broker = await broker_factory()
    assert (await broker.append("#r", "alice", "a", "text", "x", TS)).seq == 1
    redis.kill()
    await redis.start()  # same port and dir (AOF): the data is back, the scripts are not
    for _ in range(100):  # bounded: the batcher reconnects after its back-off
        try:
            await broker.batcher.call("PING")
            break
        except ClusterError:
            await asyncio.sleep(0.05)
    listener = asyncio.create_task(_published_in_order(
        redis.url, [keys.room_channel("#r"), "after"], 2))
    await asyncio.sleep(0.2)  # subscribed (a publish before that would be missed)
    await _one_turn_append_then_publish(broker, "b")
    got = await listener
    assert len(got) == 2 and got[1] == b"b", got
    assert got[0].startswith(b"2 ")  # the append's publish: seq 2, first
    client = Redis.from_url(redis.url)
    try:
        assert await client.xlen(keys.room_log("#r")) == 2
    finally:
        await client.aclose()


async def test_a_script_flush_between_turns_costs_one_retry_and_loses_nothing(
        broker_factory, redis):
    """SCRIPT FLUSH under a live connection: the turn's append is answered NOSCRIPT and
    sent again with the script loaded ahead of it (stored once, acked), and the next turn
    is in order again. (The command behind it in that one turn ran first: the failure
    table in docs/cluster.md.)"""
    broker = await broker_factory()
    assert (await broker.append("#r", "alice", "a", "text", "x", TS)).seq == 1
    client = Redis.from_url(redis.url)
    try:
        await client.script_flush()
        before = broker.batcher.pipelines
        await _one_turn_append_then_publish(broker, "b")
        assert broker.batcher.pipelines == before + 2  # the turn, then its retry
        listener = asyncio.create_task(_published_in_order(
            redis.url, [keys.room_channel("#r"), "after"], 2))
        await asyncio.sleep(0.2)
        await _one_turn_append_then_publish(broker, "c")
        got = await listener
        assert len(got) == 2 and got[0].startswith(b"3 ") and got[1] == b"c", got
        assert await client.xlen(keys.room_log("#r")) == 3
        assert (await broker.append("#r", "alice", "b", "text", "y", TS)).duplicate
    finally:
        await client.aclose()


# Holds Redis for about ``ARGV[1]`` ms (a pipeline that is in flight that long).
_BUSY = """local t = redis.call('TIME')
local stop = t[1] * 1000000 + t[2] + ARGV[1] * 1000
repeat t = redis.call('TIME') until t[1] * 1000000 + t[2] >= stop
return 1"""


async def test_the_next_turn_is_written_while_one_is_in_flight_and_order_holds(
        broker_factory, redis):
    """A turn's pipeline goes out while the one before it is still in Redis (on the same
    connection): Redis runs them, and the node settles them, in the order made."""
    broker = await broker_factory()
    await broker.append("#r", "alice", "w", "text", "warm", TS)  # scripts loaded
    listener = asyncio.create_task(_published_in_order(
        redis.url, [keys.room_channel("#r"), "after"], 20))
    await asyncio.sleep(0.2)
    busy = broker.batcher.call("EVAL", _BUSY, 0, 150)  # in flight for 150 ms
    await asyncio.sleep(0)
    acks = []
    for i in range(10):
        acks.append(broker.submit("#r", "alice", f"m{i}", "text", f"m{i}", TS))
        broker.publish("after", f"p{i}".encode())
        await asyncio.sleep(0)  # the next loop turn: the next pipeline
    done = await asyncio.gather(*acks)
    await busy
    assert broker.batcher.overlapped >= 1
    assert [d.seq for d in done] == list(range(2, 12))
    got = await listener
    assert [g.split(b" ", 1)[0] if g[:1].isdigit() else g for g in got] == [
        x for i in range(10) for x in (str(i + 2).encode(), f"p{i}".encode())]
    assert seqs(broker.seen, "#r") == []  # not subscribed: nothing handed on


async def test_a_pipeline_that_fails_in_flight_fails_the_one_written_behind_it(
        broker_factory, redis):
    """Their replies cannot be told apart once a connection is dropped: both fail as
    unavailable (retryable), and the batcher goes on with a new connection."""
    from cfm_server.cluster.errors import ClusterUnavailable

    broker = await broker_factory(socket_timeout=0.3, backoff=(0.05, 0.1))
    await broker.append("#r", "alice", "w", "text", "warm", TS)
    busy = broker.batcher.call("EVAL", _BUSY, 0, 800)  # past the deadline
    await asyncio.sleep(0)
    behind = broker.submit("#r", "alice", "x", "text", "x", TS)
    results = await asyncio.gather(busy, behind, return_exceptions=True)
    assert all(isinstance(r, ClusterUnavailable) for r in results), results
    for _ in range(100):  # bounded: Redis ends the script, the probe finds it back
        try:
            again = await broker.append("#r", "alice", "x", "text", "x", TS)
            break
        except ClusterUnavailable:
            await asyncio.sleep(0.05)
    assert again.seq == 2  # the first "x" stored or not, "x" is stored once
    client = Redis.from_url(redis.url)
    try:
        assert await client.xlen(keys.room_log("#r")) == 2
    finally:
        await client.aclose()


async def _evalsha_calls(client: Redis) -> int:
    return int((await client.info("commandstats")).get("cmdstat_evalsha", {}).get("calls", 0))


async def test_the_appends_of_one_loop_turn_run_as_one_script_call_in_order(
        broker_factory, redis):
    """One EVALSHA stores the turn's appends of every room (at most MERGE_LIMIT each),
    each room's in the order they were made."""
    from cfm_server.cluster.batcher import MERGE_LIMIT

    broker = await broker_factory()
    await broker.append("#warm", "alice", "w", "text", "warm up", TS)
    client = Redis.from_url(redis.url)
    try:
        before = await _evalsha_calls(client)
        done = await asyncio.gather(*(broker.append(f"#r{i % 5}", "bob", f"c{i}", "text",
                                                    f"m{i}", TS + i) for i in range(200)))
        assert await _evalsha_calls(client) == before + 1
        for r in range(5):
            assert [d.seq for d in done[r::5]] == list(range(1, 41))
            assert {d.epoch for d in done[r::5]} == {(await broker.head(f"#r{r}")).epoch}
        assert len({d.epoch for d in done}) == 5  # each room its own
        before = await _evalsha_calls(client)
        await asyncio.gather(*(broker.append("#big", "bob", f"b{i}", "text", "x", TS)
                               for i in range(MERGE_LIMIT + 1)))
        assert await _evalsha_calls(client) == before + 2
    finally:
        await client.aclose()


async def test_a_message_refused_inside_a_merged_call_fails_alone(broker_factory, redis):
    broker = await broker_factory()
    client = Redis.from_url(redis.url)
    try:
        await client.set(keys.room_meta("#broken"), "not a hash")  # WRONGTYPE for HGET
        results = await asyncio.gather(
            broker.append("#ok", "alice", "a1", "text", "one", TS),
            broker.append("#broken", "alice", "b1", "text", "lost", TS),
            broker.append("#ok", "alice", "a2", "text", "two", TS + 1),
            broker.append("#ok", "alice", "a1", "text", "one again", TS + 2),  # a retry
            return_exceptions=True)
    finally:
        await client.aclose()
    assert isinstance(results[1], ClusterError) and "WRONGTYPE" in str(results[1])
    first, second, retry = results[0], results[2], results[3]
    assert (first.seq, second.seq) == (1, 2) and not first.duplicate
    assert (retry.seq, retry.ts, retry.duplicate) == (1, TS, True)
    assert [m.text for m in await broker.history("#ok", limit=10)] == ["one", "two"]


async def test_a_command_made_between_two_appends_runs_between_them(broker_factory):
    broker = await broker_factory()
    await broker.append("#warm", "alice", "w", "text", "loads the script", TS)
    first, seen, second = await asyncio.gather(  # queued in this order, in one turn
        broker.submit("#order", "alice", "o1", "text", "one", TS),
        broker.batcher.call("HGET", keys.room_meta("#order"), "seq"),
        broker.submit("#order", "alice", "o2", "text", "two", TS))
    assert (first.seq, seen, second.seq) == (1, b"1", 2)
