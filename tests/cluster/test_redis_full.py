"""A Redis that is full (``maxmemory`` reached under ``noeviction``, docs/cluster.md,
"Redis requirements"): messages and new accounts are refused, retryably, but the
cluster stays up. Nodes' heartbeats, the presence counts and the shared limits run
(their scripts are ``allow-oom``: what they write is bounded by the nodes and users
online, not by what users say), so no node is reaped and nobody is shown offline while
one user's flood holds Redis at its cap.

Real ``cfm serve --redis`` nodes over a real redis-server; ``presence_expiry`` 1.5 s
(a beat every 0.5 s) keeps the waits short.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from redis.asyncio import Redis

from cfm_server.cluster import keys
from tests.cluster.helpers import wait_until
from tests.cluster.test_limits import none_more_fits
from tests.wire import WireClient, signed_in

NODE_DEFAULTS = {"presence_expiry": 1.5, "presence_grace": 0}


@contextlib.asynccontextmanager
async def full(url: str) -> AsyncIterator[Redis]:
    """Redis at its memory cap for the block: every write that may grow memory is
    refused with OOM, as after a flood of messages."""
    client = Redis.from_url(url)
    used = int((await client.info("memory"))["used_memory"])
    await client.config_set("maxmemory", str(used // 2))
    try:
        yield client
    finally:
        await client.config_set("maxmemory", "0")
        await client.aclose()


async def collect(client: WireClient, into: list[dict[str, Any]]) -> None:
    """Every frame the client is told, in order (until cancelled)."""
    while True:
        with contextlib.suppress(TimeoutError):
            into.append(await client.recv(timeout=1))


async def test_a_full_redis_refuses_messages_but_keeps_nodes_and_presence(nodes, redis) -> None:
    a = await nodes()
    b = await nodes()
    async with signed_in(a.url, "alice") as alice, signed_in(b.url, "bob") as bob:
        async with signed_in(b.url, "carol") as carol:
            for me, others in ((alice, ("bob", "carol")), (bob, ("alice",)),
                               (carol, ("alice",))):
                for other in others:
                    await me.send({"t": "contact", "op": "add", "name": other, "id": other})
                    await me.recv_until("contact", ref=other)
            await alice.send({"t": "join", "room": "#lobby"})
            await alice.recv_until("joined")
            carol_token = carol.token
        await alice.recv_until("presence", name="carol", status="offline")
        seen: list[dict[str, Any]] = []  # what alice is told from here on
        reader: asyncio.Task[None] | None = None
        async with full(redis.url) as client:
            await alice.send({"t": "say", "room": "#lobby", "text": "hi", "id": "m1"})
            refused = await alice.recv_until("error", ref="m1")
            assert refused["code"] == "internal" and refused["retry_ms"] > 0, refused
            # Carol signs in on the other node while Redis is full: she is counted online
            # in the cluster's presence, and alice's node hears of it.
            async with signed_in(b.url, "carol", token=carol_token):
                await alice.recv_until("presence", name="carol", status="online",
                                       timeout=10)
                counted = await client.hgetall(keys.presence_user("carol"))
                assert counted == {b"n2": b"1"}, counted
            reader = asyncio.create_task(collect(alice, seen))
            start = {node: await client.zscore(keys.PRESENCE_NODES, node)
                     for node in ("n1", "n2")}
            assert None not in start.values(), start
            beats: dict[str, float | None] = dict(start)

            async def refresh() -> None:
                for node in beats:
                    beats[node] = await client.zscore(keys.PRESENCE_NODES, node)

            # Both nodes keep beating for more than two expiries of Redis being full.
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 20
            while any(beats[n] is None or beats[n] < start[n] + 3000 for n in beats):
                assert loop.time() < deadline, f"heartbeats stalled: {start} → {beats}"
                await asyncio.sleep(0.1)
                await refresh()
        # Redis has room again: the next message is stored and bob gets it.
        await alice.send({"t": "say", "room": "#lobby", "text": "back", "id": "m2"})
        await wait_until(lambda: any(f.get("t") == "ack" and f.get("id") == "m2"
                                     for f in seen), "the ack once Redis has room")
        assert reader is not None
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        told = [f["status"] for f in seen if f.get("t") == "presence" and f["name"] == "bob"]
        assert "offline" not in told, told


async def test_the_per_address_cap_holds_over_the_nodes_while_redis_is_full(nodes, redis) -> None:
    """The connection counts (``conn_count.lua``, ``allow-oom``: bounded by the
    connections open) are kept in Redis while it is full: a third connection from an
    address capped at two is refused on either node. (Before, each node counted only
    its own while Redis refused the script: one more fitted on each.)"""
    settings = {**NODE_DEFAULTS, "trusted_proxies": ["127.0.0.1"], "max_conns_per_ip": 2}
    a, b = await nodes(**settings), await nodes(**settings)
    via = {"additional_headers": {"X-Forwarded-For": "198.51.100.9"}}
    async with full(redis.url):
        first = await WireClient.open(a.url, **via)
        second = await WireClient.open(b.url, **via)
        try:
            await none_more_fits((a.url, b.url), via)
        finally:
            await first.close()
            await second.close()
