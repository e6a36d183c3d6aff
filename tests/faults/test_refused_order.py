"""Says the store refused (`internal`) are retried without letting a later say overtake
them: a client's messages are stored in the order it sent them."""

from __future__ import annotations

import asyncio
from typing import Any

from cfm_common.client import Client

MAX_PAGES = 1073741823


def internal_errors(server: Any) -> float:
    return server.metrics.registry.get_sample_value(
        "cfm_errors_total", {"code": "internal"}) or 0.0


async def test_a_say_sent_after_a_refused_one_is_stored_after_it(server_factory: Any) -> None:
    server = await server_factory(rate_limits=False)
    # The store's own connection: its page limit stands in for a full disk, and lifting
    # it for the disk getting room again.
    conn = server.store._conn
    async with Client(server.url, "alice", token_file=False) as alice:
        await alice.join("#lobby")
        await alice.say("a0", room="#lobby", id="a0")
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {pages}")
        first = asyncio.create_task(alice.say("x" * 4000, room="#lobby", id="a1"))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while not internal_errors(server) and loop.time() < deadline:
            await asyncio.sleep(0.01)
        assert internal_errors(server), "the store never refused"
        # ... and the client has read the refusal (on a loaded machine the server's count
        # comes first): a say made before that is one sent while a1 was in flight, which
        # the server may store first, not one made after a refused one.
        entry = alice._core.outbox.by_id["a1"]
        while not entry.refusals and loop.time() < deadline:
            await asyncio.sleep(0.01)
        assert entry.refusals, "the client never read the refusal"
        conn.execute(f"PRAGMA max_page_count = {MAX_PAGES}")  # room again
        second = asyncio.create_task(alice.say("a2", room="#lobby", id="a2"))
        ack1, ack2 = await asyncio.wait_for(asyncio.gather(first, second), 20)
        assert (ack1.seq, ack2.seq) == (2, 3)
        page = await alice.history("#lobby", after=0, limit=10)
        assert [m.id for m in page.msgs] == ["a0", "a1", "a2"]
