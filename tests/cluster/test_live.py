"""Live delivery across nodes: seq order, exactly once, gaps filled, connections lost."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from cfm_common.codec import decode_server
from cfm_server.cluster import keys, scripts
from cfm_server.cluster.broker import new_epoch
from cfm_server.cluster.errors import ClusterUnavailable
from tests.cluster.helpers import seqs, wait_until
from tests.cluster.proxy import FaultyProxy

TS = 1_764_800_000_000
ROOM = "#live"


async def append_n(broker, n: int, start: int = 0, room: str = ROOM) -> list[int]:
    return [(await broker.append(room, "alice", f"c{i}", "text", f"m{i}", TS + i)).seq
            for i in range(start, start + n)]


async def test_other_nodes_receive_each_message_once_in_order(broker_factory):
    writer = await broker_factory(node="w")
    reader = await broker_factory(node="r")
    head = await reader.subscribe(ROOM)
    assert head.seq == 0
    await writer.subscribe(ROOM)
    await append_n(writer, 30)
    await wait_until(lambda: len(reader.seen) >= 30, "30 deliveries on the reader")
    await wait_until(lambda: len(writer.seen) >= 30, "30 deliveries on the writer")
    assert seqs(reader.seen, ROOM) == list(range(1, 31))
    assert seqs(writer.seen, ROOM) == list(range(1, 31))  # its own: once, not twice
    assert {origin for _, _, origin, _ in reader.seen} == {"w"}


async def test_subscribing_delivers_only_what_follows_the_head(broker_factory):
    writer = await broker_factory()
    reader = await broker_factory()
    await append_n(writer, 5)
    head = await reader.subscribe(ROOM)
    assert head.seq == 5
    await append_n(writer, 2, start=5)
    await wait_until(lambda: len(reader.seen) >= 2, "two deliveries")
    assert seqs(reader.seen, ROOM) == [6, 7]


async def test_a_missed_publish_is_filled_from_the_stream_before_later_ones(
        broker_factory, redis):
    writer = await broker_factory()
    reader = await broker_factory()
    await reader.subscribe(ROOM)
    await append_n(writer, 2)
    await wait_until(lambda: len(reader.seen) == 2, "the first two")
    # Seq 3 is stored by the very script, but its publish goes nowhere: lost on the way.
    client = Redis.from_url(redis.url)
    try:
        head, tail = scripts.msg_parts(ROOM, "bob", "lost", TS, "text", "lost-1")
        await client.evalsha(scripts.APPEND.sha if await client.script_exists(
            scripts.APPEND.sha) == [True] else await client.script_load(scripts.APPEND.source),
            4, keys.room_meta(ROOM), keys.room_log(ROOM), keys.room_ids(ROOM),
            keys.room_changes(ROOM),
            8, "bob", "lost-1", TS, head, tail, new_epoch(), "nowhere", "elsewhere")
    finally:
        await client.aclose()
    assert reader.seen[-1][1] == 2
    await append_n(writer, 2, start=10)  # seqs 4 and 5 arrive live: 3 is missing
    await wait_until(lambda: len(reader.seen) >= 5, "five deliveries")
    assert seqs(reader.seen, ROOM) == [1, 2, 3, 4, 5]
    assert reader.seen[2][2] == "elsewhere"
    assert reader.seen[2][3] == scripts.msg_bytes(head, 3, tail)


async def test_a_dropped_pubsub_connection_is_refilled_after_reconnect(broker_factory, redis):
    proxy = FaultyProxy(redis.port)
    await proxy.start()
    try:
        writer = await broker_factory()
        reader = await broker_factory(proxy.url, backoff=(0.05, 0.2))
        await reader.subscribe(ROOM)
        await append_n(writer, 3)
        await wait_until(lambda: len(reader.seen) == 3, "three deliveries")
        proxy.refusing = True
        proxy.cut()  # the reader loses Redis and cannot come back yet
        await append_n(writer, 4, start=3)  # published while it is away: lost to it
        connects = reader.subscriber.connects
        await wait_until(lambda: reader.subscriber.connects > connects + 1,
                         "a failed reconnect attempt")
        assert seqs(reader.seen, ROOM) == [1, 2, 3]
        proxy.refusing = False
        await wait_until(lambda: len(reader.seen) >= 7, "the four missed messages")
        await append_n(writer, 2, start=7)
        await wait_until(lambda: len(reader.seen) >= 9, "live again")
        assert seqs(reader.seen, ROOM) == list(range(1, 10))
    finally:
        await proxy.close()


async def test_the_watchdog_notices_a_half_open_pubsub_connection(broker_factory, redis):
    proxy = FaultyProxy(redis.port)
    await proxy.start()
    try:
        writer = await broker_factory()
        reader = await broker_factory(proxy.url, ping_interval=0.2, ping_timeout=0.5,
                                      socket_timeout=1.0, backoff=(0.05, 0.2))
        await reader.subscribe(ROOM)
        await append_n(writer, 2)
        await wait_until(lambda: len(reader.seen) == 2, "two deliveries")
        connects = reader.subscriber.connects
        proxy.freeze()  # no FIN, no RST: only a ping can tell
        await append_n(writer, 3, start=2)
        await wait_until(lambda: reader.subscriber.connects > connects, "a new connection")
        await wait_until(lambda: len(reader.seen) >= 5, "the three missed messages")
        assert seqs(reader.seen, ROOM) == [1, 2, 3, 4, 5]
    finally:
        await proxy.close()


async def test_unreachable_redis_is_a_retryable_error_and_recovers_by_itself(
        broker_factory, redis):
    proxy = FaultyProxy(redis.port)
    await proxy.start()
    try:
        broker = await broker_factory(proxy.url, socket_timeout=1.0, backoff=(0.05, 0.2))
        assert (await broker.append(ROOM, "alice", "a", "text", "x", TS)).seq == 1
        proxy.refusing = True
        proxy.cut()
        with pytest.raises(ClusterUnavailable) as caught:
            await broker.append(ROOM, "alice", "b", "text", "y", TS)
        assert caught.value.retry_ms >= 100
        with pytest.raises(ClusterUnavailable):
            await broker.head(ROOM)  # fails at once while down, no queueing
        proxy.refusing = False
        await wait_until(lambda: not broker.batcher.down, "the batcher back up")
        done = await broker.append(ROOM, "alice", "b", "text", "y", TS)
        assert done.seq == 2
    finally:
        await proxy.close()


async def test_a_room_whose_history_redis_lost_gets_a_new_epoch_and_goes_on(
        broker_factory, redis):
    resets: list[tuple[str, str]] = []
    writer = await broker_factory()
    reader = await broker_factory(on_reset=lambda room, epoch: resets.append((room, epoch)))
    await reader.subscribe(ROOM)
    first = await writer.append(ROOM, "alice", "a", "text", "before", TS)
    await append_n(writer, 2, start=1)
    await wait_until(lambda: len(reader.seen) == 3, "three deliveries")
    client = Redis.from_url(redis.url)
    try:
        await client.flushall()  # Redis lost everything (say, restarted without its AOF)
    finally:
        await client.aclose()
    again = await writer.append(ROOM, "alice", "a", "text", "after", TS)
    assert again.seq == 1 and not again.duplicate and again.epoch != first.epoch
    await wait_until(lambda: len(reader.seen) == 4, "the first message of the new epoch")
    assert resets == [(ROOM, again.epoch)]
    assert seqs(reader.seen, ROOM) == [1, 2, 3, 1]


async def test_a_room_whose_meta_was_lost_goes_on_after_its_stream_in_a_new_epoch(
        broker_factory, redis):
    resets: list[tuple[str, str]] = []
    writer = await broker_factory()
    reader = await broker_factory(on_reset=lambda room, epoch: resets.append((room, epoch)))
    await reader.subscribe(ROOM)
    first = await writer.append(ROOM, "alice", "a", "text", "one", TS)
    await append_n(writer, 2, start=1)
    await wait_until(lambda: len(reader.seen) == 3, "three deliveries")
    client = Redis.from_url(redis.url)
    try:
        await client.delete(keys.room_meta(ROOM))  # evicted, or deleted by hand
    finally:
        await client.aclose()
    later = await writer.append(ROOM, "alice", "z", "text", "four", TS)
    assert later.seq == 4 and later.epoch != first.epoch
    await wait_until(lambda: len(reader.seen) == 4, "the fourth message")
    assert seqs(reader.seen, ROOM) == [1, 2, 3, 4]  # 1-3 are not delivered again
    assert resets == [(ROOM, later.epoch)]
    assert [m.seq for m in await writer.history(ROOM, limit=10)] == [1, 2, 3, 4]


async def test_a_half_open_command_connection_times_out_and_is_replaced(broker_factory, redis):
    proxy = FaultyProxy(redis.port)
    await proxy.start()
    try:
        broker = await broker_factory(proxy.url, socket_timeout=1.0, backoff=(0.05, 0.2))
        assert (await broker.append(ROOM, "alice", "a", "text", "x", TS)).seq == 1
        proxy.freeze()  # the pooled connection goes silent: no error, no reply
        with pytest.raises(ClusterUnavailable):
            await broker.append(ROOM, "alice", "b", "text", "y", TS)
        await wait_until(lambda: not broker.batcher.down, "the batcher back up")
        # "b" may or may not have run before the freeze swallowed its reply: a retry
        # with its id gets seq 2 either way, stored once.
        assert (await broker.append(ROOM, "alice", "b", "text", "y", TS)).seq == 2
        assert (await broker.append(ROOM, "alice", "c", "text", "z", TS)).seq == 3
    finally:
        await proxy.close()


async def test_subscribing_mid_stream_delivers_exactly_what_follows_the_head(broker_factory):
    writer = await broker_factory()
    reader = await broker_factory()
    stop = asyncio.Event()

    async def write() -> None:
        i = 0
        while not stop.is_set():
            await asyncio.gather(*(writer.append(ROOM, "alice", f"c{i + k}", "text", "x", TS)
                                   for k in range(5)))
            i += 5

    task = asyncio.create_task(write())
    try:
        await wait_until(lambda: writer.batcher.pipelines >= 5, "writes under way")
        head = await reader.subscribe(ROOM)
        await wait_until(lambda: len(reader.seen) >= 20, "live messages after the head")
    finally:
        stop.set()
        await task
    last = (await writer.head(ROOM)).seq
    await wait_until(lambda: reader.seen and reader.seen[-1][1] == last, "the last message")
    assert seqs(reader.seen, ROOM) == list(range(head.seq + 1, last + 1))


async def test_messages_from_two_writers_survive_repeated_cuts_exactly_once_in_order(
        broker_factory, redis):
    proxy = FaultyProxy(redis.port)
    await proxy.start()
    try:
        writers = [await broker_factory(node="w1"), await broker_factory(node="w2")]
        reader = await broker_factory(proxy.url, socket_timeout=1.0, backoff=(0.02, 0.1))
        await reader.subscribe(ROOM)
        total = 0
        for round_ in range(5):
            await asyncio.gather(*(w.append(ROOM, w.node, f"{w.node}-{round_}-{k}", "text",
                                            "x", TS) for w in writers for k in range(20)))
            total += 40
            proxy.cut()  # the reader loses both its connections, mid-stream
        await wait_until(lambda: len(reader.seen) >= total, "every message")
        assert seqs(reader.seen, ROOM) == list(range(1, total + 1))
        assert reader.subscriber.connects >= 2
    finally:
        await proxy.close()


async def test_a_redis_that_accepts_but_never_answers_is_unavailable_not_a_hang(
        broker_factory, redis):
    proxy = FaultyProxy(redis.port)
    await proxy.start()
    try:
        proxy.silent = True  # even the connection handshake gets no reply
        broker = await broker_factory(proxy.url, socket_timeout=1.0, ping_timeout=1.0,
                                      backoff=(0.05, 0.2))
        with pytest.raises(ClusterUnavailable):
            await broker.append(ROOM, "alice", "a", "text", "x", TS)
        await wait_until(lambda: broker.subscriber.connects >= 2, "a second pub/sub attempt")
        proxy.silent = False
        await wait_until(lambda: not broker.batcher.down, "the batcher back up")
        await wait_until(lambda: broker.subscriber.connected, "the pub/sub connection up")
        # The confirmation waits only socket_timeout (1 s here); a loaded machine can
        # miss that once, and a node would try again, as this does (bounded).
        for attempt in range(10):
            try:
                await broker.subscribe(ROOM)
                break
            except ClusterUnavailable:
                if attempt == 9:
                    raise
        writer = await broker_factory()
        assert (await writer.append(ROOM, "alice", "a", "text", "x", TS)).seq == 1
        await wait_until(lambda: seqs(broker.seen, ROOM) == [1], "live delivery")
    finally:
        await proxy.close()


async def test_publishes_split_across_reads_or_packed_into_one_arrive_whole(broker_factory):
    """The subscriber parses the socket's bytes itself: a message longer than one read
    (``READ_SIZE``), and a burst of small ones sent in one pipeline, each arrive whole,
    once, in order; a channel unsubscribed from hands nothing on."""
    from cfm_server.cluster.subscriber import READ_SIZE

    writer = await broker_factory(node="w")
    reader = await broker_factory(node="r")
    await reader.subscribe(ROOM)
    await reader.subscribe("#other")
    big = "x" * (3 * READ_SIZE + 17)
    sent = [writer.submit(ROOM, "alice", f"c{i}", "text", big if i in (3, 40) else f"m{i}",
                          TS + i) for i in range(60)]  # one loop turn: one pipeline
    await asyncio.gather(*sent)
    await wait_until(lambda: len(reader.seen) >= 60, "60 deliveries")
    assert seqs(reader.seen, ROOM) == list(range(1, 61))
    texts = [decode_server(msg).text for _, _, _, msg in reader.seen]  # type: ignore[union-attr]
    assert texts == [big if i in (3, 40) else f"m{i}" for i in range(60)]
    await reader.unsubscribe("#other")
    await writer.append("#other", "alice", "o1", "text", "after", TS)
    await writer.append(ROOM, "alice", "c60", "text", "last", TS + 60)
    await wait_until(lambda: len(reader.seen) >= 61, "the last one")
    assert [room for room, *_ in reader.seen[60:]] == [ROOM]


async def test_a_subscription_redis_refuses_fails_and_the_others_go_on(broker_factory, redis):
    """Redis answers SUBSCRIBE with an error (here an ACL that forbids the channel): the
    subscriber drops the connection and connects again; the refused room's subscribe
    fails as unavailable, and the rooms it may follow are delivered as before."""
    admin = Redis.from_url(redis.url)
    try:
        await admin.execute_command(
            "ACL", "SETUSER", "node", "on", ">secret", "~*", "+@all", "resetchannels",
            f"&{keys.room_channel(ROOM)}")
    finally:
        await admin.aclose()
    url = redis.url.replace("redis://", "redis://node:secret@")
    reader = await broker_factory(url, node="r", socket_timeout=1.0, backoff=(0.05, 0.2))
    writer = await broker_factory(node="w")
    await reader.subscribe(ROOM)
    connects = reader.subscriber.connects
    with pytest.raises(ClusterUnavailable):
        await reader.subscribe("#forbidden")
    assert reader.subscriber.connects > connects  # the refusal ended a connection
    await wait_until(lambda: reader.subscriber.connected, "connected again")
    await append_n(writer, 3)
    await wait_until(lambda: len(reader.seen) >= 3, "three deliveries")
    assert seqs(reader.seen, ROOM) == [1, 2, 3]


async def test_the_pubsub_connection_reads_over_tls(broker_factory, tmp_path):
    """``rediss://``: the subscriber reads the TLS stream redis-py opened (its own
    parsing below the TLS layer's chunks), a message longer than a read included."""
    import trustme

    from cfm_server.cluster.subscriber import READ_SIZE
    from tests.cluster.redis_proc import RedisProcess
    from tests.ports import free_port

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    chain, key, ca_file = tmp_path / "chain.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    cert.private_key_pem.write_to_path(str(key))
    chain.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    ca.cert_pem.write_to_path(str(ca_file))
    tls_port = free_port()
    proc = RedisProcess(tmp_path / "tls-redis", extra_args=(
        "--tls-port", str(tls_port), "--tls-cert-file", str(chain), "--tls-key-file",
        str(key), "--tls-ca-cert-file", str(ca_file), "--tls-auth-clients", "no"))
    await proc.start()
    try:
        url = f"rediss://127.0.0.1:{tls_port}/0?ssl_ca_certs={ca_file}"
        reader = await broker_factory(url, node="r")
        writer = await broker_factory(proc.url, node="w")  # plain TCP, the same Redis
        await reader.subscribe(ROOM)
        big = "y" * (2 * READ_SIZE + 5)
        await asyncio.gather(*(writer.submit(ROOM, "alice", f"c{i}", "text",
                                             big if i == 1 else f"m{i}", TS + i)
                               for i in range(3)))
        await wait_until(lambda: len(reader.seen) >= 3, "three deliveries over TLS")
        assert seqs(reader.seen, ROOM) == [1, 2, 3]
        assert [decode_server(m).text for *_, m in reader.seen] == ["m0", big, "m2"]  # type: ignore[union-attr]
        assert reader.subscriber.connects == 1
    finally:
        await proc.stop()
