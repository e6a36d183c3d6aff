"""Presence after Redis was out of reach for longer than ``presence_expiry``: the node
reaped while alive registers again and its users, told gone everywhere by the reaper,
are told back — people who stayed connected all along must not look offline for good."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator
from typing import Any

from tests.cluster.proxy import FaultyProxy
from tests.wire import WireClient, signed_in


async def statuses(client: WireClient, name: str, into: list[str]) -> None:
    """Every status of ``name`` the client is told, in order (until cancelled)."""
    while True:
        with contextlib.suppress(TimeoutError):
            frame = await client.recv_until("presence", name=name, timeout=1)
            into.append(frame["status"])


@contextlib.asynccontextmanager
async def watching_each_other(a: Any, b: Any) -> AsyncIterator[dict[str, list[str]]]:
    """alice on node ``a`` and bob on node ``b``, contacts of each other: what each is
    told of the other's status, in order, until the block ends."""
    async with signed_in(a.url, "alice") as alice, signed_in(b.url, "bob") as bob:
        for me, other in ((alice, "bob"), (bob, "alice")):
            await me.send({"t": "contact", "op": "add", "name": other, "id": "c"})
            await me.recv_until("contact", ref="c")
        seen: dict[str, list[str]] = {"bob": [], "alice": []}
        readers = [asyncio.create_task(statuses(alice, "bob", seen["bob"])),
                   asyncio.create_task(statuses(bob, "alice", seen["alice"]))]
        try:
            yield seen
        finally:
            for reader in readers:
                reader.cancel()
            await asyncio.gather(*readers, return_exceptions=True)


async def test_users_of_a_node_reaped_while_cut_off_are_told_back(
        server_factory, redis) -> None:
    """Node a's link to Redis goes silent (frozen, not cut: its beats hang under the
    batcher's 5 s deadline) for longer than its registration's lifetime; node b beats on
    time and reaps it. a's user is told gone, then back once a reaches Redis again and
    registers anew (both users stayed connected all along)."""
    proxy = FaultyProxy(redis.port)
    await proxy.start()
    try:
        a = await server_factory(redis_url=proxy.url, node_id="n1", presence_expiry=1.5,
                                 presence_grace=0)
        b = await server_factory(redis_url=redis.url, node_id="n2", presence_expiry=1.5,
                                 presence_grace=0)
        async with watching_each_other(a, b) as seen:
            proxy.freeze()
            for _ in range(150):
                if "offline" in seen["alice"] and seen["alice"][-1] == "online":
                    break
                await asyncio.sleep(0.1)
    finally:
        await proxy.close()
    assert "offline" in seen["alice"], seen  # b reaped a
    assert seen["alice"][-1] == "online", seen
    assert b.node.presence.reaped == 1


async def test_a_frozen_redis_reaps_no_node_and_nobody_looks_offline(nodes, redis) -> None:
    """Redis stopped (SIGSTOP) for longer than the nodes' registrations have left, but
    under the batcher's 5 s deadline: every beat is held up alike and none fails. The
    first beat after it must not take the other node for dead: a beat allows the others
    as late as it came itself (presence_beat.lua). Nobody is told offline."""
    a = await nodes(presence_expiry=1.5, presence_grace=0)
    b = await nodes(presence_expiry=1.5, presence_grace=0)
    async with watching_each_other(a, b) as seen:
        assert redis.proc is not None
        os.kill(redis.proc.pid, signal.SIGSTOP)  # 0.5 s beats, registrations of 1 s
        try:
            await asyncio.sleep(3)
        finally:
            os.kill(redis.proc.pid, signal.SIGCONT)
        await asyncio.sleep(2.5)  # beats through more than a registration's lifetime
    assert all("offline" not in s for s in seen.values()), seen
    assert a.node.presence.reaped == b.node.presence.reaped == 0


async def test_a_redis_restart_reaps_no_node_and_nobody_looks_offline(nodes, redis) -> None:
    """Redis SIGKILLed and started again on its AOF, out of reach for longer than the
    nodes' registrations had left: every node's beats failed alike, so the first node
    back does not take the others for dead (it waits a registration lifetime and a
    probe's wait for their beats): nobody is told offline, nobody reaped."""
    a = await nodes(presence_expiry=1.5, presence_grace=0)
    b = await nodes(presence_expiry=1.5, presence_grace=0)
    async with watching_each_other(a, b) as seen:
        redis.kill()
        await asyncio.sleep(2.5)  # past the registrations' 1 s lifetime
        await redis.start()
        # Both nodes reach Redis again, then beat (every 0.5 s) through more than a
        # registration lifetime: a reap would have come by then.
        for _ in range(150):
            if not any(n.node.broker.batcher.down for n in (a, b)):
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(2.5)
    assert all("offline" not in s for s in seen.values()), seen
    assert a.node.presence.reaped == b.node.presence.reaped == 0
