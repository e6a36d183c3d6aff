"""A loopback TCP proxy that cuts connections mid-frame.

    proxy = CuttingProxy("127.0.0.1", server_port, rng)
    await proxy.start()
    proxy.url("/ws")              # ws://127.0.0.1:<proxy port>/ws
    proxy.cutting = False         # from now on, forward without cutting
    proxy.holding = True          # leave the server's replies unread, not forwarded
    proxy.drop_all()              # abort every connection; held replies are discarded
    await proxy.close()

Each connection is forwarded byte for byte until its budget, drawn from the seeded RNG,
runs out: the proxy forwards exactly the bytes up to that offset (usually in the middle
of a WebSocket frame) and then aborts both sides, as a broken network would.
"""

from __future__ import annotations

import asyncio
import contextlib
import random

CHUNK = 4096


class CuttingProxy:
    def __init__(self, host: str, upstream_port: int, rng: random.Random,
                 min_bytes: int = 64, max_bytes: int = 40_000) -> None:
        self.host = host
        self.upstream_port = upstream_port
        self.rng = rng
        self.min_bytes = min_bytes
        self.max_bytes = max_bytes
        self.cutting = True
        self.holding = False
        self.cuts = 0
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, self.host, 0)

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    def url(self, path: str = "/ws") -> str:
        return f"ws://{self.host}:{self.port}{path}"

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        # Aborted transports end every pump; the connection tasks then finish by themselves.
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)

    def drop_all(self) -> None:
        """Abort every open connection, as a broken network would (no close frame)."""
        for writer in list(self._writers):
            writer.transport.abort()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(self.host, self.upstream_port)
        except OSError:
            writer.transport.abort()
            self._tasks.discard(task)
            return
        self._writers |= {writer, up_writer}
        # One budget shared by both directions, drawn once cutting is on: the cut falls
        # anywhere in the conversation.
        budget: list[int | None] = [None]
        try:
            _, pending = await asyncio.wait(
                [asyncio.create_task(self._pump(reader, up_writer, budget)),
                 asyncio.create_task(self._pump(up_reader, writer, budget, replies=True))],
                return_when=asyncio.FIRST_COMPLETED,
            )
            for p in pending:
                p.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        finally:
            for w in (writer, up_writer):
                w.transport.abort()
                self._writers.discard(w)
            self._tasks.discard(task)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    budget: list[int | None], replies: bool = False) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while True:
                # While holding, the server's bytes wait in the kernel buffers unread.
                while replies and self.holding:
                    await asyncio.sleep(0.005)
                data = await reader.read(CHUNK)
                if not data:
                    break
                while replies and self.holding:  # held since the read began
                    await asyncio.sleep(0.005)
                if self.cutting:
                    if budget[0] is None:
                        budget[0] = self.rng.randint(self.min_bytes, self.max_bytes)
                    if len(data) >= budget[0]:
                        writer.write(data[: budget[0]])  # up to the cut, mid-frame
                        with contextlib.suppress(OSError):
                            await writer.drain()
                        self.cuts += 1
                        return
                    budget[0] -= len(data)
                writer.write(data)
                await writer.drain()
