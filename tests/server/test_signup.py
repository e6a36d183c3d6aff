"""A new identity is nobody until it is stored: no frame reaches its session before the
welcome, and nobody can write to it or claim it meanwhile."""

from __future__ import annotations

from typing import Any

import pytest

from tests.wire import WireClient, signed_in

pytestmark = pytest.mark.both_modes  # one node, and two over Redis (tests/modes.py)


@pytest.mark.single_node("the store's commit window (commit_interval_ms)")
async def test_nothing_reaches_a_sign_up_before_its_welcome(server_factory: Any) -> None:
    # Every write waits 0.5 s for its transaction: the sign-up is pending that long.
    server = await server_factory(commit_interval_ms=500, hello_timeout=0.3)
    async with signed_in(server.url, "bob") as bob, WireClient.connect(server.url) as newbie:
        await newbie.send({"t": "hello", "v": 1, "name": "newbie"})
        # Meanwhile: the handle is held, and nobody can write to it yet.
        async with WireClient.connect(server.url) as rival:
            taken = await rival.hello("newbie")
            assert taken["code"] == "name_taken" and "being claimed" in taken["msg"]
        await bob.send({"t": "say", "to": "newbie", "text": "hi", "id": "b1"})
        refused = await bob.recv_until("error")
        assert refused["code"] == "no_such_user" and refused["ref"] == "b1"
        # The welcome is the first frame, though the commit outlasted hello_timeout.
        first = await newbie.recv(5)
        assert first["t"] == "welcome" and first["name"] == "newbie"
        assert first["rooms"] == []
    async with signed_in(server.url, "bob", token=bob.token) as bob_again:
        await bob_again.send({"t": "say", "to": "newbie", "text": "now?", "id": "b2"})
        assert (await bob_again.recv_until("ack"))["id"] == "b2"
