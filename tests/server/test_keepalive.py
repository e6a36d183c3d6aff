"""Keepalive pings from the server's one timer (cfm_server/keepalive.py), not a task per
connection: a peer that answers stays, one that does not is closed with 1011, as
websockets' own keepalive did."""

from __future__ import annotations

import asyncio

from tests.faults.rawws import OP_CLOSE, OP_PING, OP_PONG, RawWebSocket
from tests.wire import eventually, signed_in


async def test_a_peer_that_answers_pings_stays_and_is_pinged_again(server_factory) -> None:
    server = await server_factory(ping_interval=0.2, ping_timeout=0.3)
    ws = await RawWebSocket.open(server.url)
    try:
        assert ws.status == 101
        for _ in range(3):  # three pings in turn, each answered
            opcode, payload = await ws.recv(timeout=5.0)
            assert opcode == OP_PING
            await ws.send(payload, OP_PONG)
        # Well past the timeout of the last one: still open, and pinged again.
        opcode, _ = await ws.recv(timeout=5.0)
        assert opcode == OP_PING
    finally:
        ws.close()


async def test_a_peer_that_never_answers_is_closed_with_1011(server_factory) -> None:
    server = await server_factory(ping_interval=0.2, ping_timeout=0.3)
    ws = await RawWebSocket.open(server.url)
    try:
        assert ws.status == 101
        opcode, _ = await ws.recv(timeout=5.0)
        assert opcode == OP_PING  # not answered
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5.0
        while True:
            opcode, payload = await ws.recv(timeout=max(0.01, deadline - loop.time()))
            if opcode == OP_CLOSE:
                break
            assert opcode == OP_PING, opcode  # no second ping while one waits
        assert int.from_bytes(payload[:2], "big") == 1011
        assert b"keepalive ping timeout" in payload
    finally:
        ws.close()


async def test_pings_off_sends_none(server_factory) -> None:
    server = await server_factory(ping_interval=0)
    ws = await RawWebSocket.open(server.url)
    try:
        assert ws.status == 101
        try:
            frame = await ws.recv(timeout=0.5)
        except TimeoutError:
            frame = None
        assert frame is None
    finally:
        ws.close()


async def test_the_timer_stops_with_the_last_connection(server_factory) -> None:
    server = await server_factory(ping_interval=0.2, ping_timeout=0.3)
    wheel = server._guard.keepalive
    async with signed_in(server.url, "alice"), signed_in(server.url, "bob"):
        await eventually(lambda: len(wheel) == 2)
        assert wheel._handle is not None
    await eventually(lambda: len(wheel) == 0)
    assert wheel._handle is None
