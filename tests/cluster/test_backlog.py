"""A node's backlog of writes is bounded: when clients send more than Redis takes, the
node stops reading them until its queue goes out (cluster/batcher.py, "Backlog"), so
what waits behind the queue (the node's heartbeat, other users' frames) waits for at
most two pipelines, and nothing is lost or doubled. One real node, whose link to a
real redis-server is slowed by a loopback proxy."""

from __future__ import annotations

from typing import Any

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
            # Calls the node made and Redis has not answered yet (queued, or in the
            # pipelines in flight), counted as they are made and answered.
            unanswered = most = gauge = 0
            enqueue = batcher._enqueue

            def answered(_: object) -> None:
                nonlocal unanswered
                unanswered -= 1

            def counted(call: Any) -> Any:
                nonlocal unanswered, most, gauge
                unanswered += 1
                most = max(most, unanswered)
                future = enqueue(call)
                gauge = max(gauge, batcher.backlog)  # what cfm_cluster_backlog reports
                future.add_done_callback(answered)
                return future

            batcher._enqueue = counted
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
    finally:
        await proxy.close()
    # Over the limit, the session read no further frame until Redis answered enough.
    assert most <= LIMIT + 2, f"{most} calls unanswered with a limit of {LIMIT}"
    assert LIMIT <= gauge <= most  # the metric saw the backlog reach its limit
    assert sorted(acked.values()) == list(range(1, SAYS + 1))
    assert seen == list(range(1, SAYS + 1))
