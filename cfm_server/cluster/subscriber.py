"""The node's one pub/sub connection, watched by its own ping.

redis-py's health check does not notice a half-open socket (the peer gone without a FIN
or RST: a cut cable, a frozen VM, a dropped NAT entry), so the connection would wait for
messages forever. The watchdog sends a PING every ``ping_interval`` and declares the
connection dead when nothing at all arrives within ``ping_timeout``. A dead or dropped
connection is thrown away; a new one subscribes to every channel again and, once Redis
confirmed them all, ``on_connected`` runs: the broker re-reads each room's head and fills
what it missed while the connection was gone. Reconnects back off with jitter.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from cfm_server.cluster.batcher import CONNECTION_ERRORS

log = logging.getLogger(__name__)


class _Dead(Exception):
    """The watchdog's verdict: nothing came back in time."""


class Subscriber:
    def __init__(
        self,
        client: Redis,
        on_message: Callable[[bytes, bytes], None],
        on_connected: Callable[[], Awaitable[None]],
        *,
        ping_interval: float = 2.0,
        ping_timeout: float = 3.0,
        backoff: tuple[float, float] = (0.05, 2.0),
    ) -> None:
        self._client = client
        self._on_message = on_message
        self._on_connected = on_connected
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self._backoff = backoff
        self._channels: set[str] = set()
        self._confirmed: set[str] = set()  # on the current connection
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._pubsub: PubSub | None = None
        self._heard = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.connects = 0  # connections made (for tests and metrics)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def close(self) -> None:
        self._closing = True  # ends the loop even if a cancellation gets swallowed
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait({self._task}, timeout=5.0)
        await self._discard()

    @property
    def connected(self) -> bool:
        return self._pubsub is not None

    async def subscribe(self, channel: str, timeout: float) -> None:
        """Subscribe and wait until Redis confirmed it (messages published after that
        reach us); raises TimeoutError if no connection confirmed it in time (the
        channel stays wanted: the next connection subscribes to it)."""
        self._channels.add(channel)
        if channel in self._confirmed:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(channel, []).append(waiter)
        if self._pubsub is not None:
            with contextlib.suppress(*CONNECTION_ERRORS):
                await self._pubsub.subscribe(channel)  # a failure shows in the reader
        await asyncio.wait({waiter}, timeout=timeout)
        if not waiter.done():
            waiter.cancel()
            raise TimeoutError(f"Redis did not confirm the subscription within {timeout} s")
        waiter.result()

    async def unsubscribe(self, channel: str) -> None:
        self._channels.discard(channel)
        self._confirmed.discard(channel)
        for waiter in self._waiters.pop(channel, []):
            waiter.cancel()
        if self._pubsub is not None:
            with contextlib.suppress(*CONNECTION_ERRORS):
                await self._pubsub.unsubscribe(channel)

    # --- the connection's life ---------------------------------------------------------

    async def _run(self) -> None:
        first, cap = self._backoff
        delay = first
        while not self._closing:
            try:
                await self._connect()
                delay = first
                await self._serve()
            except (_Dead, *CONNECTION_ERRORS) as exc:
                log.warning("pub/sub connection lost (%s); reconnecting", exc or type(exc))
            except Exception:  # whatever it was, the node must not stay deaf
                log.exception("pub/sub connection failed; reconnecting")
            finally:
                await self._discard()
            await asyncio.sleep(delay * random.uniform(0.75, 1.25))
            delay = min(cap, delay * 2)

    async def _connect(self) -> None:
        pubsub = self._pubsub = self._client.pubsub()
        self.connects += 1
        # Connecting includes a handshake that waits for replies, and the client has no
        # socket timeout: the watchdog's deadline bounds it.
        if self._channels:
            opening = asyncio.ensure_future(pubsub.subscribe(*self._channels))
        else:
            opening = asyncio.ensure_future(pubsub.ping())  # a dead Redis shows now
        try:
            await asyncio.wait({opening}, timeout=self.ping_timeout)
        finally:
            if not opening.done():
                opening.cancel()
                await asyncio.wait({opening}, timeout=1.0)
        if opening.cancelled():
            raise _Dead(f"no connection within {self.ping_timeout} s")
        opening.result()

    async def _serve(self) -> None:
        reader = asyncio.create_task(self._read())
        watchdog = asyncio.create_task(self._watch())
        resync = asyncio.create_task(self._resync_when_confirmed())
        try:
            done, _ = await asyncio.wait({reader, watchdog}, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # raises what ended it
        finally:
            for task in (reader, watchdog, resync):
                task.cancel()
            await asyncio.gather(reader, watchdog, resync, return_exceptions=True)

    async def _resync_when_confirmed(self) -> None:
        while not self._channels <= self._confirmed:
            self._heard.clear()
            await self._heard.wait()
        await self._on_connected()

    async def _read(self) -> None:
        assert self._pubsub is not None
        pubsub = self._pubsub
        while True:
            message: dict[str, Any] | None = await pubsub.get_message(timeout=None)
            self._heard.set()
            if message is None:
                continue
            kind = message["type"]
            if kind == "message":
                channel = message["channel"]
                # What was published before an unsubscribe can still be on the way:
                # once unsubscribe has returned, nothing more of that channel is handed on.
                if channel.decode() in self._channels:
                    self._on_message(channel, message["data"])
            elif kind == "subscribe":
                self._confirm(message["channel"].decode())

    def _confirm(self, channel: str) -> None:
        if channel not in self._channels:
            return  # unsubscribed since
        self._confirmed.add(channel)
        for waiter in self._waiters.pop(channel, []):
            if not waiter.done():
                waiter.set_result(None)

    async def _watch(self) -> None:
        assert self._pubsub is not None
        while True:
            await asyncio.sleep(self.ping_interval)
            self._heard.clear()
            # asyncio.wait, not asyncio.timeout: on Python 3.11 a timeout that fires as
            # the task is cancelled can swallow the cancellation.
            heard = asyncio.ensure_future(self._ping_and_hear())
            try:
                await asyncio.wait({heard}, timeout=self.ping_timeout)
            finally:
                heard.cancel()
            if not heard.done() or heard.cancelled() or heard.exception() is not None:
                raise _Dead(f"no answer to a ping within {self.ping_timeout} s")

    async def _ping_and_hear(self) -> None:
        assert self._pubsub is not None
        await self._pubsub.ping()
        await self._heard.wait()

    async def _discard(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        self._confirmed.clear()
        if pubsub is None:
            return
        # A half-open socket must not hold us up: drop it without a goodbye.
        closing = asyncio.ensure_future(pubsub.aclose())
        await asyncio.wait({closing}, timeout=1.0)
        if not closing.done():
            closing.cancel()
        closing.add_done_callback(_ignore_outcome)


def _ignore_outcome(task: asyncio.Future[None]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved, so never reported as unretrieved
