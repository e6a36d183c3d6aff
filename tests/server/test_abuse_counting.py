"""What counts toward the 4008 close ("too many errors"), and what its log line says.

Read marks answer traffic the client received, not traffic it started: the server
refuses the surplus over the read limit but does not count it, so a peer who writes
fast cannot get a reader disconnected. Everything else still counts.
"""

from __future__ import annotations

import logging

import pytest

from tests.wire import signed_in

pytestmark = pytest.mark.both_modes  # one node, and two over Redis (tests/modes.py)


async def test_read_marks_over_the_limit_are_refused_but_never_close(server_factory) -> None:
    server = await server_factory(abuse_max=5, history_rate=0.1, history_burst=1)
    async with signed_in(server.url, "alice") as alice:
        await alice.send({"t": "join", "room": "#lobby"})
        await alice.recv_until("joined")
        await alice.send({"t": "say", "room": "#lobby", "text": "hi", "id": "s1"})
        await alice.recv_until("ack")
        for _ in range(20):  # 19 over the limit: four times what closes a session
            await alice.send({"t": "read", "room": "#lobby", "seq": 1})
        refused = await alice.recv_n("error", 19)
        assert {(e["code"], e["ref"]) for e in refused} == {("rate_limited", "read")}
        # Still open and served.
        await alice.send({"t": "say", "room": "#lobby", "text": "still here", "id": "s2"})
        assert (await alice.recv_until("ack"))["id"] == "s2"


async def test_the_4008_log_line_names_the_handle_and_the_address(
    server_factory, caplog: pytest.LogCaptureFixture
) -> None:
    server = await server_factory(abuse_max=5)
    caplog.set_level(logging.INFO, logger="cfm_server.session")
    async with signed_in(server.url, "alice") as alice:
        for _ in range(5):
            await alice.send({"t": "nope"})
        assert await alice.wait_closed() == 4008
    lines = [r.getMessage() for r in caplog.records if "4008" in r.getMessage()]
    assert len(lines) == 1 and "alice" in lines[0] and "127.0.0.1" in lines[0], lines
