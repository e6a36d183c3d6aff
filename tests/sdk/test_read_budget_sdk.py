"""The SDK over a server whose per-user read budget refuses some of its reads: a
resume's history pages refused with rate_limited are asked again after retry_ms, a
join's replay broken off is fetched with history{after}, and every message arrives once,
in order, without failing a call."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from tests.sdk.conftest import Recorder
from tests.wire import signed_in

ROOMS = ("#a", "#b")


async def test_a_resume_over_the_read_budget_catches_up(
    server_factory: Any, clients: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="cfm_common")
    server = await server_factory(user_read_rate=65536.0, user_read_burst=131072,
                                  user_text_rate=1e7, user_text_burst=10_000_000,
                                  recv_rate=1e7, recv_burst=10_000_000, say_burst=1000,
                                  user_say_burst=1000)
    carol = clients(server.url, "carol")
    await carol.connect()
    for room in ROOMS:
        await carol.join(room)
    token = carol.token
    await carol.close()
    async with signed_in(server.url, "alice") as alice:
        for room in ROOMS:  # 40 messages of 3,000 characters: 120 KB a room
            await alice.send({"t": "join", "room": room})
            await alice.recv_until("joined")
            for i in range(40):
                await alice.send({"t": "say", "room": room, "text": f"{i} " + "x" * 3000,
                                  "id": f"{room}-{i}"})
                await alice.recv_until("ack", id=f"{room}-{i}")
    again = clients(server.url, "carol", token=token)
    events = Recorder(again)
    await again.connect()  # the welcome's rooms are caught up with history pages
    joined = await asyncio.wait_for(again.join("#a"), 30)  # and a join{since} replays
    assert joined.room == "#a"
    await events.wait(lambda r: all(len(r.msgs(room)) >= 40 for room in ROOMS), timeout=60)
    for room in ROOMS:
        assert events.seqs(room) == list(range(1, 41))
    said = " ".join(r.getMessage() for r in caplog.records)
    assert "refused for its rate" in said or "broke off" in said, said[-2000:]
