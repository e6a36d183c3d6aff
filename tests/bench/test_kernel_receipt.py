"""``cfm bench --kernel-receipt``: receipts stamped with the kernel's receive time.

A stamped connection (``wsclient.StampedConnection``) reads its socket itself with
``recvmsg`` and ``SO_TIMESTAMPNS``: the bytes of a frame that reached the socket while
the driver was busy keep the time they arrived, not the time the driver got to them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from websockets.asyncio.server import ServerConnection, serve

from cfm_bench.wsclient import RX, open_connection
from tests.bench.test_bench import _check_traffic, _in_process, _run


async def test_a_frame_read_late_keeps_the_time_the_kernel_took_it_in() -> None:
    server_side: asyncio.Future[ServerConnection] = asyncio.get_running_loop().create_future()

    async def handler(ws: ServerConnection) -> None:
        server_side.set_result(ws)
        await ws.wait_closed()

    received: list[tuple[bytes, int, int]] = []  # payload, RX.ns, when parsed
    async with serve(handler, "127.0.0.1", 0, subprotocols=["cfm.v1"]) as server:
        port = server.sockets[0].getsockname()[1]
        conn = await open_connection(
            "127.0.0.1", port, "/ws",
            lambda payload: received.append((payload, RX.ns, time.monotonic_ns())),
            stamped=True)
        ws = await server_side
        # A warm-up: the kernel may start stamping a moment after the first socket asks.
        for _ in range(200):
            await ws.send(b"warm")
            await asyncio.sleep(0.01)
            if received and received[-1][1]:
                break
        received.clear()
        sent = time.monotonic_ns()
        await ws.send(b"late")  # on loopback the bytes are in the client's socket now
        time.sleep(0.05)  # the driver is busy: nothing reads them meanwhile
        busy_until = time.monotonic_ns()
        for _ in range(200):
            if received:
                break
            await asyncio.sleep(0.01)
        await ws.send(b"again")
        for _ in range(200):
            if len(received) == 2:
                break
            await asyncio.sleep(0.01)
        conn.close()
        await asyncio.wait_for(conn.closed, 5)
    (payload, stamp, parsed), (payload2, stamp2, _) = received
    assert payload == b"late" and payload2 == b"again"
    assert sent <= stamp <= busy_until <= parsed  # taken in before, parsed after the wait
    assert stamp < stamp2
    assert RX.ns == 0  # only set while a read's bytes are parsed


async def test_rooms_with_kernel_receipts_stamp_every_receipt_no_later_than_the_driver(
    server_factory: Callable[..., Awaitable[Any]],
) -> None:
    server = await server_factory(rate_limits=False, store="memory")
    result = await _run(_in_process(server), scenario="rooms", clients=8, rooms=4, rate=200.0,
                        duration=0.6, warmup=0.2, procs=1, kernel_receipt=True)
    _check_traffic(result)
    kernel, latency = result["kernel_latency"], result["latency"]
    assert kernel["samples"] == latency["samples"]
    for key in ("p50_ms", "p99_ms", "max_ms"):
        assert kernel[key] <= latency[key]


async def test_without_the_option_no_kernel_figure_is_reported(
    server_factory: Callable[..., Awaitable[Any]],
) -> None:
    server = await server_factory(rate_limits=False, store="memory")
    result = await _run(_in_process(server), scenario="rooms", clients=4, rooms=2, rate=100.0,
                        duration=0.4, warmup=0.2, procs=1)
    _check_traffic(result)
    assert "kernel_latency" not in result
