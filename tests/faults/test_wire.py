"""Frames under the messages: pings, pongs and fragments are charged and bounded too.

websockets answers pings and assembles fragments by itself, before the session sees a
message; the server's connection (``cfm_server/wsconn.py``) charges each frame on the
wire to a budget before websockets parses it, counts fragments, and counts the pongs it
will write against the same output bound as every other byte queued for the reader.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from typing import Any

import msgpack

from tests.faults.rawws import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    RawWebSocket,
    frame,
)
from tests.faults.test_budget import counter
from tests.wire import eventually


def fragment(payload: bytes, opcode: int, *, fin: bool) -> bytes:
    data = bytearray(frame(payload, opcode))
    if not fin:
        data[0] &= 0x7F
    return bytes(data)


def closes(server: Any, code: int) -> float:
    text = server.metrics.render().decode()
    key = f'cfm_closes_total{{code="{code}"}} '
    for line in text.splitlines():
        if line.startswith(key):
            return float(line.split()[-1])
    return 0.0


async def hello(ws: RawWebSocket, name: str) -> None:
    await ws.send(msgpack.packb({"t": "hello", "v": 1, "name": name}))
    opcode, payload = await ws.recv()
    assert opcode == OP_BINARY and msgpack.unpackb(payload)["t"] == "welcome"


async def test_pongs_count_against_the_output_bound_of_a_reader_that_never_reads(
    server_factory: Any,
) -> None:
    # No budgets: only the output bound stands between a ping flood and the memory.
    bound = 64 * 1024
    server = await server_factory(rate_limits=False, send_buffer=bound)
    ws = await RawWebSocket.open(server.url, rcvbuf=4096)
    high_water = 0
    try:
        await hello(ws, "pinger")
        ping = frame(b"p" * 125, OP_PING)
        with contextlib.suppress(ConnectionError):
            for _ in range(400):  # 40,000 pings: 5 MB of pongs, far past every buffer
                ws.writer.write(ping * 100)
                await ws.writer.drain()
                for conn in server._ws.connections:
                    high_water = max(high_water, conn.transport.get_write_buffer_size())
                if closes(server, 1013):
                    break
        await eventually(lambda: closes(server, 1013) == 1)
    finally:
        ws.close()
    # The pongs never piled up past the bound (a close frame may follow the last one).
    assert high_water <= bound + 256, high_water


async def test_a_ping_flood_before_hello_is_charged_and_gets_nothing_for_free(
    server_factory: Any,
) -> None:
    # A wire budget of one byte a second: the burst (one max_frame) pays for 16 pings
    # at control_frame_cost each, then nothing more is parsed, the hello behind the
    # pings included, and the hello timeout ends the connection.
    server = await server_factory(wire_rate=1.0, wire_burst=1, hello_timeout=1.0)
    burst = server.config.max_frame + 256
    paid = burst // server.config.control_frame_cost
    ws = await RawWebSocket.open(server.url)
    try:
        ws.writer.write(frame(b"", OP_PING) * 5000)
        await ws.send(msgpack.packb({"t": "hello", "v": 1, "name": "pinger"}))
        pongs = 0
        code = None
        while True:
            try:
                opcode, payload = await ws.recv(timeout=10)
            except asyncio.IncompleteReadError:
                break
            if opcode == OP_PONG:
                pongs += 1
            elif opcode == OP_CLOSE:
                code = struct.unpack("!H", payload[:2])[0]
                break
            else:
                raise AssertionError(f"unexpected frame {opcode}: {payload[:60]!r}")
    finally:
        ws.close()
    assert pongs == paid
    assert code == 4001  # no hello in time: it waited behind the unpaid pings
    text = server.metrics.render().decode()
    assert counter(text, "cfm_frames_in_total", "over_wire_budget") >= 1


async def test_a_message_in_too_many_fragments_is_closed_1009(server_factory: Any) -> None:
    server = await server_factory()
    limit = server.config.max_fragments
    ws = await RawWebSocket.open(server.url)
    try:
        await hello(ws, "frag")
        data = msgpack.packb({"t": "say", "room": "#lobby", "text": "x" * 200, "id": "1"})
        pieces = [data[i:i + 1] for i in range(len(data))]
        assert len(pieces) > limit
        out = [fragment(pieces[0], OP_BINARY, fin=False)]
        out += [fragment(p, OP_CONT, fin=False) for p in pieces[1:-1]]
        out.append(fragment(pieces[-1], OP_CONT, fin=True))
        ws.writer.write(b"".join(out))
        assert await ws.recv_close(timeout=10) == 1009
    finally:
        ws.close()
    assert closes(server, 1009) == 1


async def test_a_message_in_a_few_fragments_is_fine(server_factory: Any) -> None:
    server = await server_factory()
    ws = await RawWebSocket.open(server.url)
    try:
        data = msgpack.packb({"t": "hello", "v": 1, "name": "frag"})
        ws.writer.write(fragment(data[:5], OP_BINARY, fin=False)
                        + fragment(b"", OP_PING, fin=True)
                        + fragment(data[5:9], OP_CONT, fin=False)
                        + fragment(data[9:], OP_CONT, fin=True))
        seen = []
        while not seen or seen[-1][0] != OP_BINARY:
            seen.append(await ws.recv())
        assert msgpack.unpackb(seen[-1][1])["t"] == "welcome"
        assert [op for op, _ in seen] == [OP_PONG, OP_BINARY]
    finally:
        ws.close()


async def test_a_frame_of_twenty_thousand_empty_maps_is_refused_unbuilt(server: Any) -> None:
    ws = await RawWebSocket.open(server.url)
    try:
        await hello(ws, "mapper")
        head = msgpack.packb({"t": "read", "room": "#lobby", "seq": 1})
        n = 20_000
        body = bytes([head[0] + 1]) + head[1:] + b"\xa4junk\xdd" + n.to_bytes(4, "big")
        await ws.send(body + b"\x80" * n)
        _, payload = await ws.recv()
        error = msgpack.unpackb(payload)
        assert error["t"] == "error" and error["code"] == "bad_frame", error
    finally:
        ws.close()


def test_the_wire_meter_passes_any_split_of_the_stream_through_unchanged() -> None:
    from cfm_server.limits import TokenBucket
    from cfm_server.wsframe import WireMeter

    stream = b"".join([
        frame(b"a" * 5, OP_BINARY), frame(b"", OP_PING), frame(b"b" * 300, OP_BINARY),
        fragment(b"c" * 70_000, OP_BINARY, fin=False), fragment(b"d" * 10, OP_CONT, fin=True),
        frame(b"e" * 125, OP_PING),
    ])
    for step in (1, 2, 3, 7, 13, 1000, len(stream)):
        bucket = TokenBucket(1.0, 1 << 30, 0.0)
        meter = WireMeter(bucket, frame_cost=256, control_cost=4096, max_fragments=64,
                          max_frame=1 << 20)
        out = b""
        for start in range(0, len(stream), step):
            admitted, retry_ms, verdict = meter.admit(stream[start:start + step], 0.0, 1 << 20)
            assert not retry_ms and not verdict
            out += admitted
        assert out == stream and meter.backlog == b"" and meter.fragments == 0
        charged = (1 << 30) - bucket.tokens
        data_frames = (5 + 256) + (300 + 256) + (70_000 + 256) + (10 + 256)
        control_frames = (0 + 4096) + (125 + 4096)
        assert charged == data_frames + control_frames
