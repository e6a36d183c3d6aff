"""A room whose epoch on a node is not Redis's when the node subscribes to it.

That happens to a group room made on two nodes at the same moment: each made it with an
epoch of its own, one reached Redis first, and the other node learns so a round trip
later — its subscription's head read may come back first, with the epoch that stands,
and the node takes Redis's. The messages the subscription handed on meanwhile (published
after the head was read, arrived before its reply was handled) belong to that epoch:
the room's seq must not go back under them, or the node would answer as if they were
not there (a history page without them, a change of one refused) until the next
message came.
"""

from __future__ import annotations

import time
from typing import Any

from cfm_server.cluster.broker import Broker, Head
from tests.cluster.helpers import wait_until
from tests.wire import signed_in

ROOM = "#both"


async def test_taking_redis_epoch_at_subscribe_keeps_what_the_subscription_handed_on(
        nodes, redis) -> None:
    a, b = await nodes(search_index=False), await nodes(search_index=False)
    node_b = b.node
    async with signed_in(a.url, "alice") as alice:
        await alice.send({"t": "join", "room": ROOM})
        await alice.recv_until("joined", room=ROOM)
        for i in range(3):
            await alice.send({"t": "say", "room": ROOM, "text": f"m{i}", "id": f"m{i}"})
            await alice.recv_until("ack", id=f"m{i}")
    world_b = node_b.world
    await wait_until(lambda: ROOM in world_b.rooms and bool(world_b.rooms[ROOM].epoch),
                     "node b learns the room")
    # As if node b had made the room too, under an epoch of its own, and not yet heard
    # that node a's stands.
    world_b.rooms[ROOM].epoch = "made-on-b-too"

    writer = Broker(redis.url, node="w", on_message=lambda *_: None)
    await writer.start()
    real_head = node_b.broker.head
    fired: list[Head] = []  # once: the subscription's head read

    async def head_then_a_message_past_it(room: str) -> Head:
        """The real head read; then, before node b handles its reply, a message stored
        past it whose publish node b has received (held by its subscription)."""
        head = await real_head(room)
        if room == ROOM and not fired:
            fired.append(head)
            await writer.submit(ROOM, "alice", "late", "text", "late", int(time.time() * 1000))
            tracker: Any = node_b.broker._rooms[ROOM]
            await wait_until(lambda: head.seq + 1 in tracker.held, "the publish reaches b")
        return head

    node_b.broker.head = head_then_a_message_past_it
    try:
        async with signed_in(b.url, "bob") as bob:
            await bob.send({"t": "join", "room": ROOM})
            joined = await bob.recv_until("joined", room=ROOM)
            assert joined["seq"] == 3
            live = await bob.recv_until("msg", room=ROOM)
            assert live["seq"] == 4 and live["text"] == "late"
            await bob.send({"t": "history", "room": ROOM, "id": "h"})
            page = await bob.recv_until("history", ref="h")
            assert [m["seq"] for m in page["msgs"]] == [1, 2, 3, 4]
            await bob.send({"t": "react", "room": ROOM, "target": 4, "emoji": "👍",
                            "id": "r1"})
            assert (await bob.recv_until("ack", id="r1"))["seq"] == 5
    finally:
        del node_b.broker.head
        await writer.close()
