"""A loopback TCP proxy in front of Redis that breaks the way networks break.

    proxy = FaultyProxy(redis_port); await proxy.start()
    proxy.url                 # redis://127.0.0.1:<proxy port>/0
    proxy.freeze()            # open connections go silent both ways (half-open: no FIN,
                              # no RST; bytes are discarded); new connections work
    proxy.cut()               # abort every open connection (RST)
    proxy.refusing = True     # new connections are closed at once (Redis "down")
    proxy.silent = True       # new connections are accepted, then never answered
    proxy.freeze_after(b"x")  # the next chunk a client sends holding these bytes reaches
                              # Redis, then its connection freezes: its reply is lost
    proxy.freeze_after_command(b"x")  # likewise, but only up to the end of the command
                              # (RESP) holding them: the commands pipelined after it on
                              # that link never reach Redis (a link cut between two)
    proxy.freeze_before_command(b"x")  # the command holding them, and what follows it,
                              # never reaches Redis (what came before it does)
    proxy.delay = 0.02        # every chunk either way waits this long (a slow link)
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable


class FaultyProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.refusing = False
        self.silent = False
        self.accepted = 0
        self.delay = 0.0
        self._marker: bytes | None = None
        self._command_marker: bytes | None = None
        self._before = False  # the command marker's cut: before its command, not after
        self._server: asyncio.Server | None = None
        self._links: list[_Link] = []

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"redis://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/0"

    def freeze(self) -> None:
        for link in self._links:
            link.frozen = True

    def freeze_after(self, marker: bytes) -> None:
        self._marker = marker

    def freeze_after_command(self, marker: bytes) -> None:
        self._command_marker, self._before = marker, False

    def freeze_before_command(self, marker: bytes) -> None:
        self._command_marker, self._before = marker, True

    def _cut_at(self, data: bytes) -> int | None:
        """Where to cut ``data``: after the command holding the command marker."""
        marker = self._command_marker
        if marker is None or marker not in data:
            return None
        self._command_marker = None
        start, end = _command_at(data, data.index(marker))
        return start if self._before else end

    def _sent(self, link: _Link, data: bytes) -> None:
        if self._marker is not None and self._marker in data:
            self._marker = None
            link.frozen = True

    def cut(self) -> None:
        for link in self._links:
            link.abort()
        self._links.clear()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self.cut()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refusing:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.transport.abort()
            return
        self.accepted += 1
        link = _Link(self, writer, up_writer)
        link.frozen = self.silent
        self._links.append(link)
        await asyncio.gather(link.pump(reader, up_writer, lambda data: self._sent(link, data),
                                       self._cut_at),
                             link.pump(up_reader, writer))
        link.abort()


class _Link:
    def __init__(self, proxy: FaultyProxy, *writers: asyncio.StreamWriter) -> None:
        self.proxy = proxy
        self.writers = writers
        self.frozen = False

    def abort(self) -> None:
        for w in self.writers:
            w.transport.abort()

    async def pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                   sent: Callable[[bytes], None] | None = None,
                   cut_at: Callable[[bytes], int | None] | None = None) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                if self.proxy.delay:
                    await asyncio.sleep(self.proxy.delay)
                cut = cut_at(data) if cut_at is not None and not self.frozen else None
                if cut is not None:
                    writer.write(data[:cut])
                    await writer.drain()
                    self.frozen = True
                    continue
                if not self.frozen:
                    writer.write(data)
                    if sent is not None:
                        sent(data)  # (before any reply can be read)
                    await writer.drain()
        self.abort()


def _command_at(data: bytes, at: int) -> tuple[int, int]:
    """Where the RESP command (``*N`` then N bulk strings) in ``data`` holding the byte
    at ``at`` starts and ends: commands are walked from the chunk's start (a client's
    pipeline starts each write at a command)."""
    pos = 0
    while pos < len(data):
        start = pos
        assert data[pos:pos + 1] == b"*", "not at a RESP command"
        eol = data.index(b"\r\n", pos)
        count = int(data[pos + 1:eol])
        pos = eol + 2
        for _ in range(count):
            eol = data.index(b"\r\n", pos)
            pos = eol + 2 + int(data[pos + 1:eol]) + 2
        if pos > at:
            return start, pos
    return len(data), len(data)
