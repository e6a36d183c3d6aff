"""Slowloris: half-open upgrades are counted from accept, bounded in time and size, and
running out of descriptors neither stops the server nor floods its log."""

from __future__ import annotations

import asyncio
import contextlib
import resource
import socket
import struct
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tests.faults.procs import ServerProcess
from tests.faults.rawws import OP_PING, frame, upgrade_request
from tests.wire import WireClient

PARTIAL_UPGRADE = b"GET /ws HTTP/1.1\r\nHost: x\r\n"  # never finished


async def open_from(url: str, source: str = "127.0.0.1") -> tuple[asyncio.StreamReader,
                                                                  asyncio.StreamWriter]:
    parts = urlsplit(url)
    return await asyncio.open_connection(parts.hostname, parts.port, local_addr=(source, 0))


async def test_half_open_upgrades_count_against_the_address_from_accept(
    server_factory: Any,
) -> None:
    server = await server_factory(max_conns_per_ip=8, upgrade_timeout=30.0)
    held = []
    try:
        for _ in range(8):
            reader, writer = await open_from(server.url)
            writer.write(PARTIAL_UPGRADE)
            held.append((reader, writer))
        # The ninth from the same address is refused at once, before any upgrade.
        reader, writer = await open_from(server.url)
        held.append((reader, writer))
        writer.write(PARTIAL_UPGRADE)
        answer = await asyncio.wait_for(reader.read(200), 10)
        assert answer.startswith(b"HTTP/1.1 429"), answer
    finally:
        for _, writer in held:
            writer.close()
    text = server.metrics.render().decode()
    assert 'cfm_refused_handshakes_total{reason="too_many_from_address"} 1.0' in text


async def test_other_addresses_connect_while_one_holds_its_cap(server_factory: Any) -> None:
    server = await server_factory(max_conns_per_ip=4, upgrade_timeout=30.0)
    held = []
    try:
        for _ in range(4):
            reader, writer = await open_from(server.url, "127.0.0.2")
            writer.write(PARTIAL_UPGRADE)
            held.append(writer)
        reader, writer = await open_from(server.url, "127.0.0.2")
        held.append(writer)
        assert (await asyncio.wait_for(reader.read(200), 10)).startswith(b"HTTP/1.1 429")
        async with WireClient.connect(server.url) as client:  # from 127.0.0.1
            assert (await client.hello("alice"))["t"] == "welcome"
    finally:
        for writer in held:
            writer.close()


async def test_an_upgrade_that_takes_too_long_is_dropped(server_factory: Any) -> None:
    server = await server_factory(upgrade_timeout=0.5)
    reader, writer = await open_from(server.url)
    try:
        writer.write(PARTIAL_UPGRADE)
        # Nothing but the end of the connection comes back (bounded by the timeout).
        assert await asyncio.wait_for(reader.read(), 10) == b""
    finally:
        writer.close()


async def test_an_upgrade_request_too_long_is_refused_431(server_factory: Any) -> None:
    server = await server_factory()
    reader, writer = await open_from(server.url)
    try:
        request = upgrade_request(server.url, {f"X-Pad-{i}": "p" * 1000 for i in range(20)})
        writer.write(request)
        answer = await asyncio.wait_for(reader.read(200), 10)
        assert answer.startswith(b"HTTP/1.1 431"), answer
    finally:
        writer.close()


def few_descriptors(limit: int) -> Any:
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
    return apply


async def test_running_out_of_descriptors_logs_once_and_accepting_goes_on(
    tmp_path: Path,
) -> None:
    server = ServerProcess(tmp_path / "data", "--set", "max_conns_per_ip=1000",
                           "--set", "upgrade_timeout=30")
    await server.start(preexec_fn=few_descriptors(48))
    held: list[socket.socket] = []
    try:
        parts = urlsplit(server.url)
        for _ in range(80):  # more than the server has descriptors for
            sock = socket.create_connection((parts.hostname, parts.port), timeout=5)
            sock.sendall(PARTIAL_UPGRADE)
            held.append(sock)
        # Descriptors stay short for a few accept retries (asyncio retries every second).
        await asyncio.sleep(3.5)
        for sock in held:
            sock.close()
        held.clear()
        # Accepting goes on once descriptors are free again.
        async with WireClient.connect(server.url) as client:
            assert (await client.hello("alice"))["t"] == "welcome"
    finally:
        for sock in held:
            sock.close()
        await server.stop()
    log = "".join(server.output)
    # A few lines and at most one traceback (a chained one prints two headers), not one
    # per failed accept: asyncio's own line rate-limited (ratelog) or a handler's own.
    lines = log.count("out of system resource") + log.count("cannot accept connections")
    assert 1 <= lines <= 6, log[-3000:]
    assert log.count("Traceback (most recent call last)") <= 2, log[-3000:]


async def test_a_ping_flood_into_a_reset_connection_does_not_flood_the_log(
    tmp_path: Path,
) -> None:
    server = ServerProcess(tmp_path / "data", "--no-rate-limits")
    await server.start()
    try:
        for _ in range(5):
            reader, writer = await asyncio.open_connection(*_host_port(server.url))
            writer.write(upgrade_request(server.url))
            await reader.readuntil(b"\r\n\r\n")
            writer.write(frame(b"x" * 125, OP_PING) * 20_000)
            await writer.drain()
            # Reset, not close: the server's next writes fail.
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
        async with WireClient.connect(server.url) as client:
            assert (await client.hello("alice"))["t"] == "welcome"
    finally:
        with contextlib.suppress(Exception):
            await server.stop()
    log = "".join(server.output)
    assert log.count("socket.send() raised exception") <= 6, log.count("socket.send()")


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    return parts.hostname, parts.port
