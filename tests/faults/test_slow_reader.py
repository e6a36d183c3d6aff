"""A client that stops reading is closed with 1013; everyone else gets every message."""

from __future__ import annotations

import asyncio
import struct
from typing import Any

import msgpack

from tests.faults.rawws import OP_CLOSE, RawWebSocket
from tests.wire import WireClient, signed_in

LOBBY = "#lobby"
MESSAGES = 1500
TEXT = "x" * 2000  # about 3 MB in all: far past the slow reader's buffers
WINDOW = 50


async def read_all(client: WireClient, n: int) -> list[int]:
    msgs = await client.recv_n("msg", n, timeout=60)
    return [m["seq"] for m in msgs]


async def test_a_reader_that_stops_is_closed_1013_and_nobody_else_stalls(
    server_factory: Any,
) -> None:
    server = await server_factory(rate_limits=False, send_buffer=64 * 1024, close_timeout=5.0)
    slow = await RawWebSocket.open(server.url, rcvbuf=4096)
    try:
        await slow.send(msgpack.packb({"t": "hello", "v": 1, "name": "slowpoke"}))
        await slow.send(msgpack.packb({"t": "join", "room": LOBBY}))
        async with signed_in(server.url, "bob") as bob, \
                signed_in(server.url, "carol") as carol, signed_in(server.url, "dave") as dave:
            for client in (bob, carol, dave):
                await client.send({"t": "join", "room": LOBBY})
                await client.recv_until("joined")
            readers = [asyncio.create_task(read_all(c, MESSAGES)) for c in (carol, dave)]
            acked = 0
            for start in range(0, MESSAGES, WINDOW):
                for i in range(start, start + WINDOW):
                    await bob.send({"t": "say", "room": LOBBY, "text": TEXT, "id": f"b{i}"})
                acked += len(await bob.recv_n("ack", WINDOW, timeout=30))
            assert acked == MESSAGES
            for seqs in await asyncio.gather(*readers):
                assert seqs == list(range(1, MESSAGES + 1))
        text = server.metrics.render().decode()
        assert 'cfm_closes_total{code="1013"} 1.0' in text, "the slow reader was not closed"
        # Closing: nothing more is queued to it while the closing handshake runs.
        assert all(s.closing for s in server.hub.users["slowpoke"].sessions)
        # Reading its backlog now, the slow reader finds the close frame at its end.
        code = None
        while True:
            try:
                opcode, payload = await slow.recv(timeout=10)
            except asyncio.IncompleteReadError:
                break
            if opcode == OP_CLOSE:
                code = struct.unpack("!H", payload[:2])[0]
                break
        assert code == 1013
    finally:
        slow.close()
    print(f"\nfaults: slow reader closed 1013; 2 readers got {MESSAGES} messages each")
