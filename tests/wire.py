"""A raw protocol client for tests: websockets + msgpack, no SDK in between.

It speaks the wire directly so that tests can send anything (malformed frames, text
messages, oversize frames) and see exactly what the server answers::

    async with WireClient.connect(server.url) as alice:
        welcome = await alice.hello("alice")
        await alice.send({"t": "say", "room": "#lobby", "text": "hi", "id": "1"})
        ack = await alice.recv_until("ack")
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import msgpack
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

SUBPROTOCOL = "cfm.v1"
# Every wait in a test is bounded: a server that stays silent fails the test, not hangs it.
DEFAULT_TIMEOUT = 5.0


class WireClient:
    """One WebSocket connection speaking msgpack maps."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.token: str | None = None
        self.seen: list[dict[str, Any]] = []  # every frame received, in order

    @classmethod
    @asynccontextmanager
    async def connect(cls, url: str, **kwargs: Any) -> AsyncIterator[WireClient]:
        kwargs.setdefault("subprotocols", [SUBPROTOCOL])
        kwargs.setdefault("compression", None)
        kwargs.setdefault("open_timeout", DEFAULT_TIMEOUT)
        kwargs.setdefault("close_timeout", 1)
        async with connect(url, **kwargs) as ws:
            yield cls(ws)

    @classmethod
    async def open(cls, url: str, **kwargs: Any) -> WireClient:
        """A connection the caller closes with :meth:`close` (for many clients at once)."""
        kwargs.setdefault("subprotocols", [SUBPROTOCOL])
        kwargs.setdefault("compression", None)
        kwargs.setdefault("open_timeout", DEFAULT_TIMEOUT)
        kwargs.setdefault("close_timeout", 1)
        return cls(await connect(url, **kwargs))

    async def close(self) -> None:
        await self.ws.close()

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send(msgpack.packb(frame, use_bin_type=True))

    async def send_raw(self, data: bytes | str) -> None:
        await self.ws.send(data)

    async def recv(self, timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:
        data = await asyncio.wait_for(self.ws.recv(), timeout)
        assert isinstance(data, bytes), f"server sent a text message: {data!r}"
        frame = msgpack.unpackb(data, raw=False)
        assert isinstance(frame, dict), frame
        self.seen.append(frame)
        return frame

    async def recv_until(
        self, t: str, timeout: float = DEFAULT_TIMEOUT, **match: Any
    ) -> dict[str, Any]:
        """The next frame of type ``t`` (whose keys equal ``match``), skipping others."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"no {t!r} frame matching {match} within {timeout}s")
            frame = await self.recv(remaining)
            if frame.get("t") == t and all(frame.get(k) == v for k, v in match.items()):
                return frame

    async def recv_n(self, t: str, n: int, timeout: float = DEFAULT_TIMEOUT) -> list[dict]:
        """The next ``n`` frames of type ``t``, skipping others."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        out = []
        while len(out) < n:
            out.append(await self.recv_until(t, max(0.01, deadline - loop.time())))
        return out

    async def expect_silence(self, t: str | None = None, timeout: float = 0.2) -> None:
        """Assert that no frame (of type ``t``) arrives within ``timeout``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (remaining := deadline - loop.time()) > 0:
            try:
                frame = await self.recv(remaining)
            except TimeoutError:
                return
            assert t is not None and frame.get("t") != t, f"unexpected frame {frame}"

    async def hello(self, name: str, token: str | None = None, **keys: Any) -> dict[str, Any]:
        """Send ``hello`` and return the ``welcome`` (or the ``error``) that answers it."""
        frame: dict[str, Any] = {"t": "hello", "v": 1, "name": name, **keys}
        if token is not None:
            frame["token"] = token
        await self.send(frame)
        reply = await self.recv()
        while reply.get("t") not in ("welcome", "error"):
            reply = await self.recv()
        if reply["t"] == "welcome":
            self.token = reply["token"]
        return reply

    async def wait_closed(self, timeout: float = DEFAULT_TIMEOUT) -> int | None:
        """Read until the server closes the connection; return the close code."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            while (remaining := deadline - loop.time()) > 0:
                await asyncio.wait_for(self.ws.recv(), remaining)
        except ConnectionClosed:
            pass
        except TimeoutError:
            raise TimeoutError(f"connection still open after {timeout}s") from None
        return self.ws.close_code


@asynccontextmanager
async def signed_in(url: str, name: str, **keys: Any) -> AsyncIterator[WireClient]:
    """A connected client that has sent ``hello`` and received its ``welcome``."""
    async with WireClient.connect(url) as client:
        welcome = await client.hello(name, **keys)
        assert welcome["t"] == "welcome", welcome
        client.welcome = welcome  # type: ignore[attr-defined]
        yield client


async def eventually(predicate: Any, timeout: float = DEFAULT_TIMEOUT) -> None:
    """Wait until ``predicate()`` is true (server-side state that no frame announces)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise TimeoutError(f"condition not met within {timeout}s")
        await asyncio.sleep(0.005)
