"""A lean RFC 6455 client for the load generator: one ``asyncio.Protocol`` per connection.

Why not ``websockets.asyncio.client``: its per-message path (assembler, futures, a
``recv()`` per frame) costs several times what the server spends sending the frame, so
a driver built on it measures itself. Here ``data_received`` cuts whole frames out of
the stream and hands each binary payload to a plain callback: no task, no future.

Only what a cfm client needs: the opening handshake with subprotocol ``cfm.v1``,
unmasked server frames (binary, ping, close, continuation), masked client frames.

``open_connection(..., stamped=True)`` reads the socket itself (``recvmsg`` with the
kernel's receive timestamp, ``SO_TIMESTAMPNS``) instead of through an asyncio transport:
while its bytes are parsed, :data:`RX` holds the time the kernel took in the last of them,
on the monotonic clock. A receipt stamped so excludes the time the driver's own process
waited for a CPU before it read them: on a machine the driver shares with the server,
that part of "send → receipt" is the driver's, not the server's (docs/performance.md).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import random
import socket
import struct
import time
from collections.abc import Callable
from typing import Any, cast

from websockets.frames import apply_mask  # the C speed-up when websockets has it

SUBPROTOCOL = "cfm.v1"
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA

# Linux's values where the socket module lacks the names (it has them on Linux builds).
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
SCM_TIMESTAMPNS = getattr(socket, "SCM_TIMESTAMPNS", SO_TIMESTAMPNS)
_READ_SIZE = 1 << 18
_TIMESPEC = struct.Struct("qq")


class RxClock:
    """The kernel's receive time of the bytes being parsed now (monotonic ns; 0: none)."""

    __slots__ = ("ns", "offset")

    def __init__(self) -> None:
        self.ns = 0
        # The kernel stamps with the wall clock; receipts are compared with monotonic
        # send times. Read once per process: a run lasts seconds, NTP slews by < 0.5 ms/s.
        self.offset = time.time_ns() - time.monotonic_ns()


RX = RxClock()


class HandshakeError(Exception):
    """The server did not switch protocols the way a cfm server must."""


def _frame(opcode: int, payload: bytes) -> bytes:
    """A masked client frame (RFC 6455 §5.3). The mask needs no secrecy on loopback."""
    n = len(payload)
    mask = random.randbytes(4)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, 0xFE, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0xFF, n)
    return head + mask + apply_mask(payload, mask)


class WsConnection(asyncio.Protocol):
    """One client connection; ``on_message(payload)`` sees every binary message."""

    def __init__(self, host: str, port: int, path: str,
                 on_message: Callable[[bytes], None]) -> None:
        loop = asyncio.get_running_loop()
        self.host, self.port, self.path = host, port, path
        self.on_message = on_message
        self.opened: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[int] = loop.create_future()
        self.transport: asyncio.Transport | None = None
        self.close_code: int | None = None
        self.bytes_in = 0
        self._key = base64.b64encode(random.randbytes(16))
        self._rest = b""
        self._open = False
        self._close_sent = False
        self._fragments: list[bytes] = []

    # --- asyncio.Protocol --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (uvloop's TCPTransport is not an asyncio.Transport subclass, but has its methods)
        self.transport = cast(asyncio.Transport, transport)
        request = (
            f"GET {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {self._key.decode()}\r\nSec-WebSocket-Version: 13\r\n"
            f"Sec-WebSocket-Protocol: {SUBPROTOCOL}\r\n\r\n"
        )
        transport.write(request.encode())

    def data_received(self, data: bytes) -> None:
        self.bytes_in += len(data)
        if self._rest:
            data = self._rest + data
            self._rest = b""
        if not self._open:
            end = data.find(b"\r\n\r\n")
            if end < 0:
                self._rest = data
                return
            try:
                self._check_response(data[:end])
            except HandshakeError as exc:
                if not self.opened.done():
                    self.opened.set_exception(exc)
                assert self.transport is not None
                self.transport.abort()
                return
            self._open = True
            self.opened.set_result(None)
            data = data[end + 4:]
        self._parse(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self._open = False
        if not self.opened.done():
            self.opened.set_exception(exc or ConnectionError("connection closed in handshake"))
        if not self.closed.done():
            self.closed.set_result(self.close_code if self.close_code is not None else 1006)

    # --- frames --------------------------------------------------------------------------

    def _check_response(self, head: bytes) -> None:
        lines = head.decode("latin-1").split("\r\n")
        status = lines[0].split(" ", 2)
        if len(status) < 2 or status[1] != "101":
            raise HandshakeError(f"server answered {lines[0]!r}")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        accept = base64.b64encode(hashlib.sha1(self._key + _GUID).digest()).decode()
        if headers.get("sec-websocket-accept") != accept:
            raise HandshakeError("wrong Sec-WebSocket-Accept")
        if headers.get("sec-websocket-protocol") != SUBPROTOCOL:
            raise HandshakeError(f"server did not pick {SUBPROTOCOL}")

    def _parse(self, data: bytes) -> None:
        pos, n = 0, len(data)
        on_message = self.on_message
        while n - pos >= 2:
            b0, b1 = data[pos], data[pos + 1]
            length = b1 & 0x7F
            start = pos + 2
            if length == 126:
                if n - pos < 4:
                    break
                length = (data[pos + 2] << 8) | data[pos + 3]
                start = pos + 4
            elif length == 127:
                if n - pos < 10:
                    break
                length = int.from_bytes(data[pos + 2:pos + 10], "big")
                start = pos + 10
            end = start + length
            if end > n:
                break
            payload = data[start:end]
            pos = end
            opcode = b0 & 0x0F
            if b0 & 0x80 and opcode == OP_BINARY:
                on_message(payload)
            else:
                self._control(b0 & 0x80, opcode, payload)
        if pos < n:
            self._rest = data[pos:]

    def _control(self, fin: int, opcode: int, payload: bytes) -> None:
        if opcode in (OP_BINARY, OP_TEXT) or opcode == OP_CONT:
            self._fragments.append(payload)
            if fin:
                whole = b"".join(self._fragments)
                self._fragments.clear()
                self.on_message(whole)
        elif opcode == OP_PING:
            self._write(_frame(OP_PONG, payload))
        elif opcode == OP_CLOSE:
            self.close_code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
            if not self._close_sent:
                self._close_sent = True
                self._write(_frame(OP_CLOSE, payload[:2]))
            # The server closes TCP first (RFC 6455 §7.1.1): it keeps the TIME_WAIT.

    # --- sending ---------------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def send(self, payload: bytes) -> None:
        """Queue one binary message (never waits)."""
        self._write(_frame(OP_BINARY, payload))

    def close(self, code: int = 1000) -> None:
        """Start the closing handshake; ``closed`` resolves when the TCP connection ends."""
        if not self._close_sent:
            self._close_sent = True
            self._write(_frame(OP_CLOSE, struct.pack("!H", code)))

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


class _SocketWriter:
    """The part of an asyncio transport a :class:`WsConnection` uses, over a non-blocking
    socket that :class:`StampedConnection` reads itself."""

    def __init__(self, sock: socket.socket, owner: StampedConnection) -> None:
        self.sock = sock
        self.owner = owner
        self.buffer = bytearray()
        self.closing = False
        self.closed = False

    def write(self, data: bytes) -> None:
        if self.closed:
            return
        if not self.buffer:
            try:
                sent = self.sock.send(data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError as exc:
                self.owner.lost(exc)
                return
            if sent == len(data):
                return
            data = data[sent:]
            asyncio.get_running_loop().add_writer(self.sock.fileno(), self._writable)
        self.buffer += data

    def _writable(self) -> None:
        try:
            sent = self.sock.send(self.buffer)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self.owner.lost(exc)
            return
        del self.buffer[:sent]
        if not self.buffer:
            asyncio.get_running_loop().remove_writer(self.sock.fileno())
            if self.closing:
                self.owner.lost(None)

    def is_closing(self) -> bool:
        return self.closing or self.closed

    def close(self) -> None:
        self.closing = True
        if not self.buffer:
            self.owner.lost(None)

    def abort(self) -> None:
        self.owner.lost(None)

    def pause_reading(self) -> None:  # (not used by the driver; for the transport's shape)
        asyncio.get_running_loop().remove_reader(self.sock.fileno())


class StampedConnection(WsConnection):
    """A :class:`WsConnection` that reads its socket with ``recvmsg`` and sets :data:`RX`
    to the kernel's receive time of each read's bytes before they are parsed."""

    def __init__(self, host: str, port: int, path: str,
                 on_message: Callable[[bytes], None], sock: socket.socket) -> None:
        super().__init__(host, port, path, on_message)
        self.sock = sock
        self.writer = _SocketWriter(sock, self)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        asyncio.get_running_loop().add_reader(sock.fileno(), self._readable)
        self.connection_made(cast(Any, self.writer))

    def _readable(self) -> None:
        try:
            data, ancillary, _, _ = self.sock.recvmsg(_READ_SIZE, 64)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self.lost(exc)
            return
        if not data:
            self.lost(None)
            return
        stamp = 0
        for level, kind, value in ancillary:
            if level == socket.SOL_SOCKET and kind == SCM_TIMESTAMPNS:
                sec, nsec = _TIMESPEC.unpack_from(value)
                stamp = sec * 1_000_000_000 + nsec - RX.offset
        RX.ns = stamp
        try:
            self.data_received(data)
        finally:
            RX.ns = 0

    def lost(self, exc: Exception | None) -> None:
        writer = self.writer
        if writer.closed:
            return
        writer.closed = True
        loop = asyncio.get_running_loop()
        loop.remove_reader(self.sock.fileno())
        loop.remove_writer(self.sock.fileno())
        self.sock.close()
        self.connection_lost(exc)


async def open_connection(host: str, port: int, path: str, on_message: Callable[[bytes], None],
                          *, source: str | None = None, timeout: float = 10.0,
                          stamped: bool = False) -> WsConnection:
    """Connect, complete the opening handshake and return the connection (``stamped``: a
    :class:`StampedConnection`)."""
    loop = asyncio.get_running_loop()
    local_addr = (source, 0) if source else None
    async with asyncio.timeout(timeout):
        if stamped:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.setblocking(False)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as asyncio does
                if local_addr is not None:
                    sock.bind(local_addr)
                await loop.sock_connect(sock, (host, port))
            except BaseException:
                sock.close()
                raise
            conn: WsConnection = StampedConnection(host, port, path, on_message, sock)
        else:
            _, conn = await loop.create_connection(
                lambda: WsConnection(host, port, path, on_message), host, port,
                local_addr=local_addr)
        try:
            await conn.opened
        except BaseException:
            conn.abort()
            raise
    return conn
