"""One simulated cfm user on a :class:`WsConnection`: hello, join, say, and counting.

Frames the bench waits for (``welcome``, ``joined``, ``history``, ``ack``) resolve
futures; ``msg`` frames go to a per-run callback that records latency. Everything else
is only counted by type, from the first bytes of the map, without unpacking it: in the
big-room scenario a driver receives tens of millions of member and presence frames.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from typing import Any

import msgpack

from cfm_bench.wsclient import WsConnection, open_connection

_unpackb = msgpack.unpackb
_packb = msgpack.packb


def frame_type(payload: bytes) -> str:
    """The ``t`` of a map whose first key is ``t`` (cfm and the baseline encode it first)."""
    # fixmap header, then the fixstr "t", then a fixstr value.
    if len(payload) > 4 and payload[1:3] == b"\xa1t" and 0xA0 <= payload[3] <= 0xBF:
        n = payload[3] & 0x1F
        return payload[4:4 + n].decode("ascii", "replace")
    try:
        obj = _unpackb(payload, raw=False)
    except Exception:
        return "?"
    t = obj.get("t") if isinstance(obj, dict) else None
    return t if isinstance(t, str) else "?"


class Stats:
    """Counters one driver process keeps for all its peers."""

    def __init__(self) -> None:
        self.frames: collections.Counter[str] = collections.Counter()
        self.errors: collections.Counter[str] = collections.Counter()
        self.frames_total = 0

    def as_dict(self) -> dict[str, Any]:
        return {"frames": dict(self.frames), "errors": dict(self.errors),
                "frames_total": self.frames_total}


class Peer:
    __slots__ = ("_waiters", "conn", "name", "on_msg", "stats", "token")

    def __init__(self, name: str, stats: Stats) -> None:
        self.name = name
        self.stats = stats
        self.conn: WsConnection | None = None
        self.token: str | None = None
        self.on_msg: Callable[[bytes], None] | None = None
        self._waiters: dict[str, collections.deque[asyncio.Future[dict[str, Any]]]] = {}

    async def connect(self, host: str, port: int, path: str, *, source: str | None = None,
                      timeout: float = 10.0, stamped: bool = False) -> None:
        self.conn = await open_connection(host, port, path, self._on_message, source=source,
                                          timeout=timeout, stamped=stamped)

    def _on_message(self, payload: bytes) -> None:
        stats = self.stats
        stats.frames_total += 1
        if self.on_msg is not None and payload.startswith(b"\xa1t\xa3msg", 1):
            self.on_msg(payload)
            return
        t = frame_type(payload)
        stats.frames[t] += 1
        waiters = self._waiters.get(t)
        if waiters:
            waiters.popleft().set_result(_unpackb(payload, raw=False))
        elif t == "error":
            frame = _unpackb(payload, raw=False)
            stats.errors[str(frame.get("code"))] += 1
            # An error answers the frame someone waits for: fail that wait, not the run.
            for queue in self._waiters.values():
                if queue:
                    queue.popleft().set_exception(RuntimeError(f"error {frame}"))
                    break

    def expect(self, t: str) -> asyncio.Future[dict[str, Any]]:
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(t, collections.deque()).append(future)
        return future

    def send(self, frame: dict[str, Any]) -> None:
        assert self.conn is not None
        self.conn.send(_packb(frame, use_bin_type=True))

    async def request(self, frame: dict[str, Any], reply: str,
                      timeout: float = 30.0) -> dict[str, Any]:
        future = self.expect(reply)
        self.send(frame)
        async with asyncio.timeout(timeout):
            return await future

    async def hello(self, timeout: float = 30.0, *, quiet: bool = False) -> dict[str, Any]:
        frame: dict[str, Any] = {"t": "hello", "v": 1, "name": self.name, "client": "cfm-bench"}
        if quiet:
            frame["quiet"] = True  # the big-room extension: no member/room presence frames
        welcome = await self.request(frame, "welcome", timeout)
        self.token = welcome.get("token")
        return welcome

    async def join(self, room: str, since: int | None = None, timeout: float = 30.0,
                   *, members_limit: int | None = None) -> dict[str, Any]:
        frame: dict[str, Any] = {"t": "join", "room": room}
        if since is not None:
            frame["since"] = since
        if members_limit is not None:
            frame["members_limit"] = members_limit
        return await self.request(frame, "joined", timeout)

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()

    async def closed(self, timeout: float = 5.0) -> None:
        if self.conn is None:
            return
        try:
            async with asyncio.timeout(timeout):
                await self.conn.closed
        except TimeoutError:
            self.conn.abort()
