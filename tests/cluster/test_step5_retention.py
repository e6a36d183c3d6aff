"""Retention on a cluster: the lease holder trims every room's stream in Redis, by size
and by age, keeping the latest message; the other node's history shows what is left."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.wire import signed_in


async def stream_seqs(server: Any, room: str) -> list[int]:
    entries = await server.node.broker.batcher.call("XRANGE", f"cfm:{{{room}}}:log", "-", "+")
    return [int(entry_id.split(b"-")[0]) for entry_id, _ in entries]


async def say_n(client: Any, room: str, n: int) -> None:
    for i in range(n):
        await client.send({"t": "say", "room": room, "text": f"message {i:02d}", "id": f"m{i}"})
        await client.recv_until("ack", id=f"m{i}", timeout=10)


async def test_the_lease_holder_trims_each_room_to_its_size_and_history_shows_the_rest(
        nodes) -> None:
    # 10 bytes a message: 35 bytes keep the last three.
    settings = {"retention_bytes": 35, "retention_interval": 0.2}
    a, b = await nodes(**settings), await nodes(**settings)
    async with signed_in(a.url, "alice") as alice, signed_in(b.url, "bob") as bob:
        for client in (alice, bob):
            await client.send({"t": "join", "room": "#games", "id": "j"})
            await client.recv_until("joined", ref="j")
        await say_n(alice, "#games", 10)
        for _ in range(200):
            if await stream_seqs(a, "#games") == [8, 9, 10]:
                break
            await asyncio.sleep(0.05)
        assert await stream_seqs(a, "#games") == [8, 9, 10]
        await bob.send({"t": "history", "room": "#games", "after": 0, "id": "h"})
        page = await bob.recv_until("history", ref="h")
        assert [m["seq"] for m in page["msgs"]] == [8, 9, 10]
        # Numbering goes on after the cut; the shared records' log is never trimmed.
        await bob.send({"t": "say", "room": "#games", "text": "after", "id": "x"})
        assert (await bob.recv_until("ack", id="x"))["seq"] == 11
        assert len(await stream_seqs(a, "state")) >= 4  # two users, two memberships


async def test_a_pass_by_age_keeps_the_latest_message_of_every_room(nodes) -> None:
    from cfm_server.cluster.retention import prune_once

    a = await nodes()
    async with signed_in(a.url, "alice") as alice:
        for room in ("#one", "#two"):
            await alice.send({"t": "join", "room": room, "id": "j"})
            await alice.recv_until("joined", ref="j")
            await say_n(alice, room, 5)
    state_before = await stream_seqs(a, "state")
    batcher = a.node.broker.batcher
    # Nothing is older than a day yet.
    assert await prune_once(batcher, a.config.__class__(retention_days=1)) == 0
    # A day later, everything is: all but each room's latest message goes.
    later = (await batcher.call("TIME"))[0]
    dropped = await prune_once(batcher, a.config.__class__(retention_days=1),
                               now_ms=(int(later) + 2 * 86_400) * 1000)
    assert dropped == 8
    assert await stream_seqs(a, "#one") == [5] and await stream_seqs(a, "#two") == [5]
    assert await stream_seqs(a, "state") == state_before
