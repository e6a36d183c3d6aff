"""A node's backlog of writes is bounded: when clients send more than Redis takes, the
node stops reading them until its queue goes out (cluster/batcher.py, "Backlog"), so
what waits behind the queue (the node's heartbeat, other users' frames) waits for at
most two pipelines, and nothing is lost or doubled. One real node, whose link to a
real redis-server is slowed by a loopback proxy."""

from __future__ import annotations

import asyncio

from tests.cluster.proxy import FaultyProxy
from tests.wire import signed_in

LIMIT = 40
SAYS = 600


async def test_a_flood_of_says_stops_being_read_at_the_backlog_limit_and_all_are_stored(
        server_factory, redis) -> None:
    proxy = FaultyProxy(redis.port)
    await proxy.start()
    try:
        node = await server_factory(redis_url=proxy.url, node_id="n1", rate_limits=False)
        batcher = node.node.broker.batcher
        batcher.backlog_limit = LIMIT
        async with signed_in(node.url, "alice") as alice, signed_in(node.url, "bob") as bob:
            for client in (alice, bob):
                await client.send({"t": "join", "room": "#flood"})
                await client.recv_until("joined", room="#flood")
            proxy.delay = 0.01  # each pipeline's round trip: 20 ms and more
            most = 0
            stop = asyncio.Event()

            async def watch() -> None:
                nonlocal most
                while not stop.is_set():
                    most = max(most, batcher.backlog)
                    await asyncio.sleep(0)

            watcher = asyncio.create_task(watch())
            for i in range(SAYS):  # as fast as the socket takes them, no ack awaited
                await alice.send({"t": "say", "room": "#flood", "text": f"m{i}",
                                  "id": f"s{i}"})
            acked: dict[str, int] = {}
            while len(acked) < SAYS:
                frame = await alice.recv(timeout=30)
                if frame["t"] == "ack":
                    assert frame["id"] not in acked, frame
                    acked[frame["id"]] = frame["seq"]
                else:
                    assert frame["t"] in ("presence", "member"), frame
            seen = [frame["seq"] for frame in await bob.recv_n("msg", SAYS, timeout=30)]
            stop.set()
            await watcher
    finally:
        await proxy.close()
    # Over the limit, the session read no further frame until the queue went out.
    assert most <= LIMIT + 1, f"{most} calls queued with a limit of {LIMIT}"
    assert sorted(acked.values()) == list(range(1, SAYS + 1))
    assert seen == list(range(1, SAYS + 1))
