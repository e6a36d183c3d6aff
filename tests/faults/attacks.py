"""The attacks of issue 10 (items 1-4), as a process of their own for the soak test.

    python -m tests.faults.attacks ws://127.0.0.1:PORT/ws SECONDS

Each attack runs from its own loopback address (127.0.0.2 …), as attackers on other
machines would, so the per-address cap limits each, not the legitimate users on
127.0.0.1. Everything is bounded: the number of connections, and the time (SECONDS).
Prints one line per attack with what it did.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

import msgpack

from tests.faults.rawws import OP_BINARY, OP_CONT, OP_PING, frame, upgrade_request

LONG = "\U0001f600" * 4096  # 16 KiB of UTF-8
BIG_ROOM = "#soakbig"
LOBBY = "#lobby"
MEMBERS = int(os.environ.get("CFM_SOAK_MEMBERS", "600"))  # long-named members of the lobby


def fragment(payload: bytes, opcode: int, *, fin: bool) -> bytes:
    data = bytearray(frame(payload, opcode))
    if not fin:
        data[0] &= 0x7F
    return bytes(data)


class Raw:
    """A raw connection from a chosen source address: upgrade, then frames."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, url: str, source: str, *, rcvbuf: int | None = None,
                   upgrade: bool = True) -> Raw:
        parts = urlsplit(url)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.bind((source, 0))
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (parts.hostname, parts.port))
        reader, writer = await asyncio.open_connection(sock=sock)
        raw = cls(reader, writer)
        if upgrade:
            writer.write(upgrade_request(url))
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            if not head.startswith(b"HTTP/1.1 101"):
                writer.close()
                raise ConnectionError(head.split(b"\r\n", 1)[0].decode())
        return raw

    async def send(self, payload: dict[str, object] | bytes) -> None:
        data = payload if isinstance(payload, bytes) else msgpack.packb(payload)
        self.writer.write(frame(data, OP_BINARY))
        await self.writer.drain()

    async def hello(self, name: str, **keys: object) -> None:
        await self.send({"t": "hello", "v": 1, "name": name, **keys})

    def close(self) -> None:
        self.writer.close()


async def forever(until: float, step: Callable[[], Awaitable[None]]) -> int:
    """Run ``step`` again and again until the deadline; how many times it ran."""
    n = 0
    while time.monotonic() < until:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError, TimeoutError,
                                 ConnectionError):
            await asyncio.wait_for(step(), max(0.1, until - time.monotonic()))
        n += 1
        await asyncio.sleep(0.05)
    return n


async def replay_bomb(url: str, until: float) -> str:
    """Item 1: sessions that never read, each asking for 30 replays of a room of 16 KiB
    messages at once."""
    sessions = 0

    async def step() -> None:
        nonlocal sessions
        raw = await Raw.open(url, "127.0.0.2", rcvbuf=4096)
        try:
            await raw.hello(f"bomber{sessions % 8}")
            sessions += 1
            for _ in range(30):
                await raw.send({"t": "join", "room": BIG_ROOM, "since": 0})
            await asyncio.sleep(5)
        finally:
            raw.close()

    await asyncio.gather(*(forever(until, step) for _ in range(8)))
    return f"replay bomb: {sessions} sessions x 30 join{{since:0}}"


async def roster_joins(url: str, until: float) -> str:
    """Item 1: old clients joining the lobby of many long-named members, never reading."""
    joins = 0

    async def step() -> None:
        nonlocal joins
        raw = await Raw.open(url, "127.0.0.3", rcvbuf=4096)
        try:
            await raw.hello(f"rjoin{joins % 8}")
            for _ in range(20):
                await raw.send({"t": "join", "room": LOBBY})
                joins += 1
            await asyncio.sleep(3)
        finally:
            raw.close()

    await asyncio.gather(*(forever(until, step) for _ in range(4)))
    return f"roster joins: {joins}"


async def pong_pile(url: str, until: float) -> str:
    """Item 2: signed-in sockets that send 125-byte pings and never read."""
    sent = 0

    async def step() -> None:
        nonlocal sent
        raw = await Raw.open(url, "127.0.0.4", rcvbuf=4096)
        try:
            await raw.hello(f"pinger{sent % 16}")
            ping = frame(b"p" * 125, OP_PING) * 64
            while time.monotonic() < until:
                raw.writer.write(ping)
                await raw.writer.drain()
                sent += 64
        finally:
            raw.close()

    await asyncio.gather(*(forever(until, step) for _ in range(16)))
    return f"pong pile: {sent} pings"


async def empty_pings(url: str, until: float) -> str:
    """Item 3a: empty pings without hello, as fast as the socket takes them."""
    sent = 0

    async def step() -> None:
        nonlocal sent
        raw = await Raw.open(url, "127.0.0.5")
        try:
            ping = frame(b"", OP_PING) * 1000
            while time.monotonic() < until:
                raw.writer.write(ping)
                await raw.writer.drain()
                sent += 1000
        finally:
            raw.close()

    await asyncio.gather(*(forever(until, step) for _ in range(4)))
    return f"empty pings: {sent}"


async def fragments(url: str, until: float) -> str:
    """Item 3b: messages fragmented into 4,095 frames."""
    messages = 0
    data = msgpack.packb({"t": "say", "room": LOBBY, "text": "x" * 4000, "id": "f"})
    pieces = [data[i:i + 1] for i in range(min(len(data), 4095))]
    burst = (fragment(pieces[0], OP_BINARY, fin=False)
             + b"".join(fragment(p, OP_CONT, fin=False) for p in pieces[1:-1])
             + fragment(pieces[-1], OP_CONT, fin=True))

    async def step() -> None:
        nonlocal messages
        raw = await Raw.open(url, "127.0.0.6")
        try:
            await raw.hello(f"frag{messages % 4}")
            while time.monotonic() < until:
                raw.writer.write(burst)
                await raw.writer.drain()
                messages += 1
        finally:
            raw.close()

    await asyncio.gather(*(forever(until, step) for _ in range(4)))
    return f"fragments: {messages} messages of 4,095 frames"


async def expensive_msgpack(url: str, until: float) -> str:
    """Item 3c: valid but expensive msgpack, a read carrying 20,000 empty maps, 1/s."""
    sent = 0
    head = msgpack.packb({"t": "read", "room": LOBBY, "seq": 1})
    n = 20_000
    body = (bytes([head[0] + 1]) + head[1:] + b"\xa4junk\xdd" + n.to_bytes(4, "big")
            + b"\x80" * n)

    async def step() -> None:
        nonlocal sent
        raw = await Raw.open(url, "127.0.0.7")
        try:
            await raw.hello(f"maps{sent % 25}")
            while time.monotonic() < until:
                await raw.send(body)
                sent += 1
                await asyncio.sleep(1)
        finally:
            raw.close()

    await asyncio.gather(*(forever(until, step) for _ in range(25)))
    return f"expensive msgpack: {sent} frames"


async def slowloris(url: str, until: float) -> str:
    """Item 4: half-open upgrades trickled a byte at a time, as many as it may open."""
    opened = refused = 0
    held: list[Raw] = []

    async def step() -> None:
        nonlocal opened, refused
        raw = await Raw.open(url, "127.0.0.8", upgrade=False)
        held.append(raw)
        opened += 1
        raw.writer.write(b"G")
        with contextlib.suppress(TimeoutError):
            if await asyncio.wait_for(raw.reader.read(12), 0.5):
                refused += 1
        for byte in b"ET /ws HTTP/1.1\r\n":
            if time.monotonic() >= until or raw.writer.is_closing():
                break
            raw.writer.write(bytes([byte]))
            await asyncio.sleep(1)

    try:
        await asyncio.gather(*(forever(until, step) for _ in range(100)))
    finally:
        for raw in held:
            raw.close()
    return f"slowloris: {opened} half-open upgrades, {refused} answered at once"


async def legit_reader(url: str, until: float) -> str:
    """Not an attack: a client that asks for the big room's whole replay and reads it."""
    await asyncio.sleep(1)
    raw = await Raw.open(url, "127.0.3.1")
    try:
        await raw.hello("reader")
        await raw.send({"t": "join", "room": BIG_ROOM, "since": 0})
        msgs = 0
        while True:
            frame_ = await asyncio.wait_for(read_frame(raw.reader), 30)
            if frame_.get("t") == "msg":
                msgs += 1
                if msgs == 500:
                    break
    finally:
        raw.close()
    return f"legit reader: replay {msgs}"


async def legit_old_client(url: str, until: float) -> str:
    """Not an attack: an old client (no members_limit) joining the crowded lobby."""
    await asyncio.sleep(2)
    raw = await Raw.open(url, "127.0.3.2")
    try:
        await raw.hello("oldtimer")
        await raw.send({"t": "join", "room": LOBBY})
        while (joined := await asyncio.wait_for(read_frame(raw.reader), 30))["t"] != "joined":
            pass
    finally:
        raw.close()
    members = joined["members"]
    assert isinstance(members, list)
    size = len(msgpack.packb(joined))
    return (f"legit old client: joined the lobby, {len(members)} listed of "
            f"{joined.get('count') or len(members)}, {size} bytes")


async def read_frame(reader: asyncio.StreamReader) -> dict[str, object]:
    """The next binary frame of a raw connection, unpacked (control frames skipped)."""
    while True:
        b0, b1 = await reader.readexactly(2)
        n = b1 & 0x7F
        if n == 126:
            n = int.from_bytes(await reader.readexactly(2), "big")
        elif n == 127:
            n = int.from_bytes(await reader.readexactly(8), "big")
        payload = await reader.readexactly(n)
        if b0 & 0x0F == OP_BINARY:
            return msgpack.unpackb(payload)
        if b0 & 0x0F == 0x8:
            raise ConnectionError(f"closed: {payload[:2].hex()}")


ATTACKS = (legit_reader, legit_old_client, replay_bomb, roster_joins, pong_pile, empty_pings,
           fragments, expensive_msgpack, slowloris)


async def prepare(url: str) -> None:
    """Fill the big room with 16 KiB messages and the lobby with long-named members."""
    async def filler(i: int) -> None:
        raw = await Raw.open(url, f"127.0.2.{i + 1}")
        try:
            await raw.hello(f"filler{i}")
            await raw.send({"t": "join", "room": BIG_ROOM})
            for j in range(10):
                await raw.send({"t": "say", "room": BIG_ROOM, "text": LONG, "id": f"{i}-{j}"})
            await asyncio.sleep(0.5)
        finally:
            raw.close()

    for start in range(0, 50, 10):
        await asyncio.gather(*(filler(i) for i in range(start, start + 10)))

    async def member(i: int) -> None:
        raw = await Raw.open(url, f"127.0.1.{i % 250 + 1}")
        try:
            await raw.hello(f"m{i:05d}", display="M" * 64, psm="P" * 128)
            await raw.send({"t": "join", "room": LOBBY})
            await asyncio.wait_for(raw.reader.read(64), 5)
        finally:
            raw.close()

    for start in range(0, MEMBERS, 20):
        await asyncio.gather(*(member(i) for i in range(start, start + 20)))


async def main(url: str, seconds: float) -> None:
    await prepare(url)
    print("prepared", flush=True)
    until = time.monotonic() + seconds
    for line in await asyncio.gather(*(attack(url, until) for attack in ATTACKS)):
        print(line, flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], float(sys.argv[2])))
