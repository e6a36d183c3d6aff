"""Coalesced writes (``Outbox``): what the one-write-per-turn path must keep.

Frames of one session stay in order, frames queued before a close still arrive before
the close frame, and every recipient of a fan-out burst gets every frame once.
"""

from __future__ import annotations

import asyncio

import pytest
from websockets.exceptions import ConnectionClosed

from tests.wire import WireClient, signed_in

pytestmark = pytest.mark.both_modes  # one node, and two over Redis (tests/modes.py)


async def frames_until_closed(client: WireClient, limit: int = 1000) -> list[dict]:
    """Every frame the server sends until it closes the connection (bounded in count)."""
    frames: list[dict] = []
    try:
        while len(frames) < limit:
            frames.append(await client.recv())
    except ConnectionClosed:
        pass
    return frames


async def test_errors_queued_in_the_same_turn_as_a_4008_close_arrive_first(
    server_factory,
) -> None:
    server = await server_factory(abuse_max=5, rate_limits=False)
    async with signed_in(server.url, "alice") as alice:
        # Pipelined: the server reads them in one go, queues five errors and then closes.
        for i in range(5):
            await alice.send({"t": "join", "room": f"bad room {i}"})
        frames = await frames_until_closed(alice)
        assert [f["t"] for f in frames] == ["error"] * 5
        assert alice.ws.close_code == 4008


async def test_a_bad_token_gets_its_error_before_the_4003_close(server) -> None:
    async with signed_in(server.url, "alice"):
        pass
    async with WireClient.connect(server.url) as impostor:
        reply = await impostor.hello("alice", token="not-the-token")
        assert reply["code"] == "bad_token"
        assert await impostor.wait_closed() == 4003


async def test_one_turn_of_mixed_frames_reaches_each_session_in_order(server_factory) -> None:
    server = await server_factory(rate_limits=False)
    async with (
        signed_in(server.url, "alice") as alice,
        signed_in(server.url, "bob") as bob,
        signed_in(server.url, "bob", token=bob.token) as bob2,
    ):
        for client in (alice, bob, bob2):
            await client.send({"t": "join", "room": "#lobby"})
            await client.recv_until("joined")
        n = 200
        # says, typing and says again, all pipelined: many land in one group commit.
        for i in range(n):
            await alice.send({"t": "say", "room": "#lobby", "text": f"m{i}", "id": f"i{i}"})
            if i % 50 == 0:
                await alice.send({"t": "typing", "room": "#lobby"})
        acks = await alice.recv_n("ack", n)
        assert [a["seq"] for a in acks] == list(range(1, n + 1))
        for reader in (bob, bob2):
            msgs = await reader.recv_n("msg", n)
            assert [m["text"] for m in msgs] == [f"m{i}" for i in range(n)]
            await reader.expect_silence("msg", timeout=0.05)


async def test_an_outbox_flush_after_the_peer_vanished_is_harmless(server_factory) -> None:
    server = await server_factory(rate_limits=False)
    async with signed_in(server.url, "alice") as alice:
        await alice.send({"t": "join", "room": "#lobby"})
        await alice.recv_until("joined")
        bob = await WireClient.open(server.url)
        await bob.hello("bob")
        await bob.send({"t": "join", "room": "#lobby"})
        await bob.recv_until("joined")
        bob.ws.transport.abort()  # gone without a closing handshake
        for i in range(20):
            await alice.send({"t": "say", "room": "#lobby", "text": "x", "id": f"g{i}"})
        acks = await alice.recv_n("ack", 20)
        assert len(acks) == 20
        await asyncio.wait_for(bob.ws.wait_closed(), 5)
