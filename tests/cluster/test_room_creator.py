"""A new group room's first membership and its creator are stored together, whatever
the node's link to Redis does between them.

They were two changes of the shared records: a link cut after the first left Redis
with the membership and no creator, a room nobody could ever moderate (its next join
made nobody creator: the room existed). Now they are one change (state_change.lua's
second record): both or neither. Real nodes, a real redis-server, and the loopback
proxy that cuts the node's link right after a given command reached Redis
(tests/cluster/proxy.py)."""

from __future__ import annotations

from typing import Any

from cfm_server.cluster import keys
from tests.cluster.proxy import FaultyProxy
from tests.cluster.redis_proc import RedisProcess
from tests.wire import eventually, signed_in


async def test_a_link_cut_after_the_membership_leaves_no_room_without_its_creator(
        redis: RedisProcess, server_factory: Any) -> None:
    from redis.asyncio import Redis

    proxy = FaultyProxy(redis.port)
    await proxy.start()
    direct = Redis.from_url(redis.url)
    try:
        a = await server_factory(redis_url=proxy.url, node_id="n1")
        async with signed_in(a.url, "alice") as alice:
            # The membership's command reaches Redis; whatever follows it on that link
            # does not, and no reply comes back.
            proxy.freeze_after_command(b"m:#team:alice")
            await alice.send({"t": "join", "room": "#team", "id": "j1"})
            first = await alice.recv_until("error", ref="j1", timeout=30)
            assert first["code"] == "internal", first
            await eventually(lambda: not a.node.unreachable(), timeout=30)
            records = keys.state_records()
            member = await direct.hexists(records, "m:#team:alice")
            creator = await direct.hget(records, "o:#team:alice")
            assert member == (creator == b"1"), (member, creator)
            # The join sent again: alice is the room's member and its creator.
            await alice.send({"t": "join", "room": "#team", "id": "j2"})
            await alice.recv_until("joined", room="#team", timeout=30)
            await eventually(lambda: a.hub.changes.creators.get("#team") == "alice",
                             timeout=30)
            await alice.send({"t": "moderators", "room": "#team", "id": "q"})
            answer = await alice.recv_until("moderators", ref="q")
            assert (answer["names"], answer["creator"]) == (["alice"], "alice"), answer
        assert await direct.hget(records, "o:#team:alice") == b"1"
    finally:
        await direct.aclose()
        await proxy.close()
