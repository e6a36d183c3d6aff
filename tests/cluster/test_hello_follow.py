"""A hello that signs nobody in leaves nothing behind on a cluster node.

Before answering a hello a node follows the user's channel in Redis and subscribes to
the user's rooms (``ClusterNode.before_sign_in``); it let go of them only when a signed-in
user's last session ended. A refused hello (a new handle on a closed server, a sign-up
over the address's limit, a wrong token) signed nobody in, so the node stayed subscribed
for good: a client sending hellos with new names grew the node's and Redis's pub/sub
state without end (27,000 channels in 10 s from one address). And a refused sign-up was
one Redis script call each, although the node's own mirror of the address's count
already said no.
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import Redis

from cfm_server.cluster import keys
from tests.wire import WireClient, signed_in


async def subscribers(redis: Any, *channels: str) -> list[int]:
    client = Redis.from_url(redis.url)
    try:
        answer = await client.execute_command("PUBSUB", "NUMSUB", *channels)
    finally:
        await client.aclose()
    return [int(n) for n in answer[1::2]]


async def no_subscriber(redis: Any, *channels: str) -> None:
    for _ in range(250):  # bounded: 250 x 20 ms
        if not any(await subscribers(redis, *channels)):
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"still subscribed: {channels} {await subscribers(redis, *channels)}")


async def test_refused_sign_ups_leave_no_subscription(nodes, redis) -> None:
    node = await nodes(registration="closed")
    names = [f"stranger{i}" for i in range(10)]
    for name in names:
        async with WireClient.connect(node.url) as client:
            assert (await client.hello(name))["code"] == "forbidden"
    await no_subscriber(redis, *(keys.user_channel(name) for name in names))


async def test_a_wrong_token_leaves_no_subscription_to_the_user_or_its_rooms(
    nodes, redis,
) -> None:
    a, b = await nodes(), await nodes()
    watched = (keys.user_channel("alice"), keys.room_channel("#den"))
    async with signed_in(a.url, "alice") as alice, signed_in(b.url, "bob") as bob:
        await alice.send({"t": "join", "room": "#den"})
        await alice.recv_until("joined")
        for node in (a, b):  # beside alice's session on a, and on a node without one
            async with WireClient.connect(node.url) as client:
                assert (await client.hello("alice", token="not-hers"))["code"] == "bad_token"
        # a still follows alice for her session: bob's add on b reaches her.
        await bob.send({"t": "contact", "op": "add", "name": "alice"})
        added = await alice.recv_until("contact")
        assert (added["op"], added["name"]) == ("added_you", "bob")
        assert await subscribers(redis, *watched) == [1, 1]  # a's, not b's
    await no_subscriber(redis, *watched)  # alice signed out: nobody follows her


async def test_a_refused_sign_up_costs_no_redis_call(nodes, redis) -> None:
    # Behind a proxy: the sign-up limit counts the forwarded address (loopback is free).
    node = await nodes(trusted_proxies=["127.0.0.1"], signup_burst=1)
    via = {"additional_headers": {"X-Forwarded-For": "198.51.100.7"}}
    async with WireClient.connect(node.url, **via) as first:
        assert (await first.hello("newcomer1"))["t"] == "welcome"
    client = Redis.from_url(redis.url)
    try:
        async with WireClient.connect(node.url, **via) as late:  # (counted as it connects)
            assert (await late.hello("newcomer2"))["code"] == "rate_limited"  # asks Redis
            await client.config_resetstat()
            for i in range(3, 13):  # a refused sign-up leaves the connection open
                assert (await late.hello(f"newcomer{i}"))["code"] == "rate_limited"
            scripts = (await client.info("commandstats")).get("cmdstat_evalsha", {})
    finally:
        await client.aclose()
    assert scripts.get("calls", 0) == 0, scripts  # before: one limit_take.lua call each


async def test_a_wrong_token_makes_the_node_read_nothing_for_the_user(nodes, redis) -> None:
    # A hello with a wrong token for a user in many rooms made the node subscribe to
    # each room and count the user's unread messages of each in Redis before refusing
    # it: ~650 Redis commands per hello for a user in 200 rooms, and no account needed.
    a, b = await nodes(), await nodes()
    rooms = [f"#r{i}" for i in range(10)]
    async with signed_in(a.url, "alice") as alice:
        for room in rooms:
            await alice.send({"t": "join", "room": room})
            await alice.recv_until("joined", room=room)
            await alice.send({"t": "say", "room": room, "text": "hi", "id": room})
            await alice.recv_until("ack", room=room)
    await no_subscriber(redis, *(keys.room_channel(room) for room in rooms))
    client = Redis.from_url(redis.url)
    try:
        await client.config_resetstat()
        for _ in range(5):
            async with WireClient.connect(b.url) as late:
                assert (await late.hello("alice", token="not-hers"))["code"] == "bad_token"
        stats = await client.info("commandstats")
    finally:
        await client.aclose()
    assert "cmdstat_subscribe" not in stats, stats.get("cmdstat_subscribe")
    # Each connection is counted and released (conn_count.lua): nothing else is run.
    assert stats.get("cmdstat_evalsha", {}).get("calls", 0) <= 2 * 5, stats["cmdstat_evalsha"]
