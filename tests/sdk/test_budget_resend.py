"""Frames the server dropped unread (over its inbound byte budget) are sent again.

The server answers such a drop with ``rate_limited`` and no ``ref``: it never read the
frame, so it cannot say which one it was. The SDK must then send again whatever of that
connection is still unanswered — says and nudges (their ids keep them single) and the
requests that are safe to repeat — instead of letting a join or a history page time out.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from cfm_common._pacing import Pacer

LOBBY = "#lobby"


async def test_says_and_requests_dropped_over_the_byte_budget_all_complete(
    server_factory: Any, clients: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A client that does not pace its bytes (an older SDK, or a budget lowered since it
    # signed in): the server's drops and the SDK's re-sends are what this tests.
    monkeypatch.setattr(Pacer, "wait_bytes", lambda self, size, now: 0.0)
    # A byte budget of ~8 KB with 16 KB/s refill: a burst of 60 × 600-byte says
    # overruns it. The frame buckets are wide open: only the byte budget drops frames.
    wide = {f"{kind}_{part}": 10_000 for kind in ("say", "join", "history")
            for part in ("rate", "burst")}
    server = await server_factory(max_frame=8192, recv_burst=4096, recv_rate=16384.0,
                                  abuse_max=100_000, **wide)
    alice = clients(server.url, "alice", request_timeout=20.0)
    await alice.connect()
    await alice.join(LOBBY)

    says = [asyncio.create_task(alice.say(f"{i:03d}" + "x" * 600, room=LOBBY, id=f"s{i}"))
            for i in range(60)]
    # Requests written in the same burst, behind the says: most likely dropped too.
    joined = asyncio.create_task(alice.join("#other"))
    page = asyncio.create_task(alice.history(LOBBY, after=0, limit=10))
    members = asyncio.create_task(alice.members(LOBBY))

    acks = await asyncio.wait_for(asyncio.gather(*says), 30)
    assert sorted(a.seq for a in acks) == list(range(1, 61))
    assert (await asyncio.wait_for(joined, 30)).room == "#other"
    assert (await asyncio.wait_for(page, 30)).room == LOBBY
    assert (await asyncio.wait_for(members, 30)).room == LOBBY

    text = server.metrics.render().decode()
    assert 'cfm_frames_in_total{type="over_budget"}' in text
    dropped = float(text.split('cfm_frames_in_total{type="over_budget"} ')[1].split()[0])
    assert dropped > 0, "nothing was dropped: the test did not test anything"
    # Each say was stored once, whatever was sent twice.
    stored = (await alice.history(LOBBY, after=0, limit=200)).msgs
    assert sorted(m.id for m in stored) == sorted(f"s{i}" for i in range(60))



async def test_one_history_request_per_room_is_in_flight_at_a_time(
    server_factory: Any, clients: Any
) -> None:
    # A history answer names only its room: two in flight for one room could be taken
    # for each other's once one is re-sent after a drop. So the client sends the next
    # only when the previous one is answered.
    import random

    from tests.faults.proxy import CuttingProxy

    server = await server_factory(rate_limits=False)
    proxy = CuttingProxy("127.0.0.1", server.port, random.Random(0))
    proxy.cutting = False
    await proxy.start()
    try:
        alice = clients(proxy.url(), "alice")
        await alice.connect()
        await alice.join(LOBBY)
        for i in range(10):
            await alice.say(f"m{i}", room=LOBBY, id=f"s{i}")

        def histories() -> float:
            return server.metrics.registry.get_sample_value(
                "cfm_frames_in_total", {"type": "history"}) or 0.0

        server.metrics.render()  # brings the counts up to date
        before = histories()
        proxy.holding = True  # the server's answers wait: the first request stays open
        older = asyncio.create_task(alice.history(LOBBY, before=6, limit=3))
        newer = asyncio.create_task(alice.history(LOBBY, after=6, limit=3))
        members = asyncio.create_task(alice.members(LOBBY))  # another kind: not held up
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while loop.time() < deadline:
            server.metrics.render()  # brings the counts up to date
            if histories() > before:
                break
            await asyncio.sleep(0.01)
        server.metrics.render()  # brings the counts up to date
        assert histories() == before + 1
        await asyncio.sleep(0.3)  # time enough for a second one to arrive, were it sent
        server.metrics.render()  # brings the counts up to date
        assert histories() == before + 1
        proxy.holding = False
        assert [m.seq for m in (await asyncio.wait_for(older, 10)).msgs] == [3, 4, 5]
        assert [m.seq for m in (await asyncio.wait_for(newer, 10)).msgs] == [7, 8, 9]
        assert (await asyncio.wait_for(members, 10)).room == LOBBY
    finally:
        await proxy.close()
