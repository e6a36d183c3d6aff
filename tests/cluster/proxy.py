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
        await asyncio.gather(link.pump(reader, up_writer, lambda data: self._sent(link, data)),
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
                   sent: Callable[[bytes], None] | None = None) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                if self.proxy.delay:
                    await asyncio.sleep(self.proxy.delay)
                if not self.frozen:
                    writer.write(data)
                    if sent is not None:
                        sent(data)  # (before any reply can be read)
                    await writer.drain()
        self.abort()
