"""A WebSocket client at the byte level, for what no well-behaved library will send.

It writes the HTTP upgrade itself (with any extra headers, at any speed) and frames
messages by hand, so a test can set RSV1 (a "compressed" frame), offer
permessage-deflate, or dribble the handshake one byte at a time.
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import struct
from urllib.parse import urlsplit

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def upgrade_request(url: str, extra_headers: dict[str, str] | None = None) -> bytes:
    parts = urlsplit(url)
    key = base64.b64encode(os.urandom(16)).decode()
    headers = {
        "Host": parts.netloc,
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": key,
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Protocol": "cfm.v1",
        **(extra_headers or {}),
    }
    lines = [f"GET {parts.path or '/'} HTTP/1.1", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def frame(payload: bytes, opcode: int = OP_BINARY, *, rsv1: bool = False) -> bytes:
    """One final, masked client frame."""
    head = bytearray([0x80 | (0x40 if rsv1 else 0) | opcode])
    n = len(payload)
    if n < 126:
        head.append(0x80 | n)
    elif n < 1 << 16:
        head.append(0x80 | 126)
        head += struct.pack("!H", n)
    else:
        head.append(0x80 | 127)
        head += struct.pack("!Q", n)
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes(head) + mask + body


class RawWebSocket:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.response_headers: dict[str, str] = {}
        self.status = 0

    @classmethod
    async def open(cls, url: str, extra_headers: dict[str, str] | None = None,
                   timeout: float = 5.0, rcvbuf: int | None = None) -> RawWebSocket:
        """Connect and upgrade; ``rcvbuf`` shrinks the socket's receive buffer (a client
        that reads slowly then fills the server's buffers, not the kernel's)."""
        parts = urlsplit(url)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (parts.hostname, parts.port))
        reader, writer = await asyncio.open_connection(sock=sock)
        ws = cls(reader, writer)
        writer.write(upgrade_request(url, extra_headers))
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
        status_line, *lines = head.decode("latin-1").split("\r\n")
        ws.status = int(status_line.split()[1])
        for line in lines:
            if ":" in line:
                name, value = line.split(":", 1)
                ws.response_headers[name.strip().lower()] = value.strip()
        return ws

    async def send(self, payload: bytes, opcode: int = OP_BINARY, *, rsv1: bool = False) -> None:
        self.writer.write(frame(payload, opcode, rsv1=rsv1))
        await self.writer.drain()

    async def recv(self, timeout: float = 5.0) -> tuple[int, bytes]:
        """The next server frame: (opcode, payload)."""
        async def read() -> tuple[int, bytes]:
            b0, b1 = await self.reader.readexactly(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack("!H", await self.reader.readexactly(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", await self.reader.readexactly(8))[0]
            return b0 & 0x0F, await self.reader.readexactly(n)

        return await asyncio.wait_for(read(), timeout)

    async def recv_close(self, timeout: float = 5.0) -> int | None:
        """Skip frames until the server's close frame; its code (None: no code, or EOF)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            try:
                opcode, payload = await self.recv(max(0.01, deadline - loop.time()))
            except asyncio.IncompleteReadError:
                return None
            if opcode == OP_CLOSE:
                return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None

    def close(self) -> None:
        self.writer.close()
