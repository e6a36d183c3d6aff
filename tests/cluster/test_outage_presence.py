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


async def test_users_of_a_node_reaped_during_an_outage_are_told_back(nodes, redis) -> None:
    a = await nodes(presence_expiry=1.5, presence_grace=0)
    b = await nodes(presence_expiry=1.5, presence_grace=0)
    async with watching_each_other(a, b) as seen:
        assert redis.proc is not None
        # Frozen, not gone: the beats hang (under the batcher's 5 s deadline) rather
        # than fail, longer than the registrations' lifetime.
        os.kill(redis.proc.pid, signal.SIGSTOP)
        try:
            await asyncio.sleep(4)
        finally:
            os.kill(redis.proc.pid, signal.SIGCONT)
        # Whichever node beats first reaps the other: its user is told gone, then back
        # once the reaped node registers again (both stayed connected throughout).
        for _ in range(150):
            told = [s for s in seen.values() if s]
            if told and all(s[-1] == "online" for s in told) and any(
                    "offline" in s for s in told):
                break
            await asyncio.sleep(0.1)
    assert any("offline" in s for s in seen.values()), seen  # a node was reaped
    assert all(s[-1] == "online" for s in seen.values() if s), seen


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
