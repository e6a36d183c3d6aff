"""The asyncio half of a :class:`~cfm_common.client.Client`: one WebSocket at a time.

It opens a session (:mod:`cfm_common._connect`), reads every frame into the
:class:`~cfm_common._core.ClientCore`, writes what the core lets out when it lets it
out (one writer task per connection), and when the connection drops reconnects on the
schedule of :mod:`cfm_common._reconnect`. It decides nothing about frames: that is the
core's. The public API is ``client.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl as ssl_module
from collections.abc import Callable
from typing import Any

from cfm_common import frames as f
from cfm_common._connect import open_session
from cfm_common._core import ClientCore
from cfm_common._persist import TokenFile
from cfm_common._reconnect import Reconnect, final_refusal
from cfm_common._states import ConnectionState
from cfm_common.errors import ClientError, ConnectionClosed

# The shell logs under one name, client.py's: one logger to turn up for the SDK's I/O.
log = logging.getLogger("cfm_common.client")

# How long close() lets queued read marks and presence go out.
CLOSE_FLUSH = 2.0


class Link:
    """Owns the connection task of one client. ``hello`` makes the frame to sign in
    with; ``ended`` is called once the client is over (its events end)."""

    def __init__(self, core: ClientCore, schedule: Reconnect, tokens: TokenFile, *,
                 hello: Callable[[], f.Hello], ended: Callable[[], None],
                 reconnect: bool = True, ssl: ssl_module.SSLContext | None = None) -> None:
        self.core = core
        self.schedule = schedule
        self.tokens = tokens
        self.hello = hello
        self.ended = ended
        self.reconnect_enabled = reconnect
        self.ssl = ssl
        self.kicked = asyncio.Event()  # wakes the writer: something was queued
        self.woken = asyncio.Event()  # cuts a back-off wait short (reconnect_now, close)
        self.ws: Any = None
        self.task: asyncio.Task[None] | None = None

    def kick(self) -> None:
        self.kicked.set()

    async def connect(self, *, wait: bool = False) -> f.Welcome:
        """:meth:`Client.connect <cfm_common.client.Client.connect>`: the first session,
        then the task that keeps one open."""
        core = self.core
        core.set_state(ConnectionState.CONNECTING)
        try:
            while True:
                url = self.schedule.servers.current
                try:
                    ws, welcome = await self._open()
                    break
                except ClientError as exc:
                    if core.closed or final_refusal(exc):
                        raise
                    now = asyncio.get_running_loop().time()
                    failed = self.schedule.connect_failed(url, exc, now)
                    if failed is None:
                        log.info("%s: %s; trying %s", core.name, exc.msg,
                                 self.schedule.servers.current)
                        continue
                    error, again = failed  # a round of them failed
                    if not wait or not again:
                        if error is exc:
                            raise
                        raise error from exc
                    delay = self.schedule.wait(now)
                    log.warning("%s: %s; trying again in %.1f s", core.name, error.msg, delay)
                    core.set_state(ConnectionState.RECONNECTING, retry_in=delay, reason=error.msg)
                    await self._nap(delay)
                    if core.closed:
                        raise ConnectionClosed("the client was closed while connecting",
                                               by_client=True) from None
                    core.set_state(ConnectionState.CONNECTING)
        except ClientError as exc:
            if not core.closed:
                self._end(exc)
            raise
        except BaseException:  # cancelled: this client will not connect any more
            self._end(ConnectionClosed("connect() was cancelled", by_client=True))
            raise
        if core.closed:  # close() was called while we were signing in
            await ws.close()
            raise ConnectionClosed("the client was closed while connecting", by_client=True)
        self._welcomed(ws, welcome)
        self.task = asyncio.create_task(self._supervise(ws), name=f"cfm-client-{core.name}")
        return welcome

    async def close(self) -> None:
        """Let the side lane out, stop every task; pending requests fail with ``closed``."""
        core = self.core
        if core.closed:
            if self.task is not None:
                await asyncio.gather(self.task, return_exceptions=True)
            return
        core.closing()
        self.woken.set()
        if core.ready:
            # Read marks and a presence change still queued go out before the close, as
            # far as the server's limits let them in a moment.
            loop = asyncio.get_running_loop()
            deadline = loop.time() + CLOSE_FLUSH
            while core.ready and core.sendq.side_busy() and loop.time() < deadline:
                await asyncio.sleep(0.02)
        core.ready = False
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        ws, self.ws = self.ws, None
        if ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 3)
        core.end(ConnectionClosed("the client was closed", by_client=True), by_client=True)
        self.ended()

    def reconnect_now(self) -> None:
        self.schedule.backoff.reset()
        self.woken.set()

    async def _nap(self, delay: float) -> None:
        """Sleep ``delay`` seconds, or less if :meth:`reconnect_now` or close() is called."""
        self.woken.clear()
        if self.core.closed:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self.woken.wait()

    async def _open(self) -> tuple[Any, f.Welcome]:
        return await open_session(self.schedule.servers.current, self.hello(),
                                  timeout=self.core.request_timeout, ssl=self.ssl)

    def _welcomed(self, ws: Any, welcome: f.Welcome) -> None:
        self.schedule.succeeded()
        self.ws = ws
        self.tokens.welcomed(welcome.token)
        log.info("%s connected to %s (session %s)", welcome.name,
                 self.schedule.servers.current, welcome.session)
        self.core.connection_made(welcome, asyncio.get_running_loop().time())
        self.kicked.set()

    def _end(self, exc: ClientError) -> None:
        self.ws = None
        self.core.end(exc)
        self.ended()

    async def _supervise(self, ws: Any) -> None:
        """Own the connection: read it, and reconnect when it drops, until closed."""
        loop = asyncio.get_running_loop()
        try:
            while True:
                code, reason, said = await self._serve(ws)
                now = loop.time()
                self.ws = None
                self.core.connection_lost(now)
                again = self.schedule.lost(code, now - self.core.connected_at, now)
                if not again or not self.reconnect_enabled:
                    log.warning("%s: connection closed for good (%s)", self.core.name, reason)
                    self._end(ConnectionClosed(reason, close_code=code, close_reason=said))
                    return
                log.info("%s: connection lost (%s); reconnecting", self.core.name, reason)
                ws = await self._reconnect_loop(reason)
                if ws is None:
                    return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug of ours: say so, and do not hang the application
            log.exception("%s: the client task failed", self.core.name)
            self._end(ConnectionClosed(f"client task failed: {exc!r}", code="internal"))

    async def _serve(self, ws: Any) -> tuple[int | None, str, str | None]:
        """Read frames until the connection ends; its close code, a reason, and the
        reason the server gave (None without one)."""
        from websockets.exceptions import ConnectionClosed as WsClosed

        loop = asyncio.get_running_loop()
        writer = asyncio.create_task(self._write_loop(ws))
        try:
            async for data in ws:
                if not isinstance(data, bytes):
                    log.warning("ignoring a text message from the server")
                elif self.core.receive_data(data, loop.time()):
                    self.kicked.set()
        except WsClosed:
            pass
        finally:
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)
            if self.core.closed:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(ws.close(), 3)
        code = ws.close_code
        said = ws.close_reason or None
        reason = f"closed with code {code}" + (f" ({said})" if said else "")
        return code, reason, said

    async def _write_loop(self, ws: Any) -> None:
        """Write what the core lets out; sleep until it says, or something is queued."""
        from websockets.exceptions import ConnectionClosed as WsClosed

        loop = asyncio.get_running_loop()
        with contextlib.suppress(WsClosed):
            while True:
                data, wait = self.core.data_to_send(loop.time())
                if data is not None:
                    await ws.send(data)
                    continue
                self.kicked.clear()
                if wait is None:
                    await self.kicked.wait()
                    continue
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await self.kicked.wait()

    async def _reconnect_loop(self, reason: str) -> Any:
        loop, core = asyncio.get_running_loop(), self.core
        while True:
            delay = self.schedule.delay(loop.time())
            core.set_state(ConnectionState.RECONNECTING, retry_in=delay, reason=reason)
            if delay:
                await self._nap(delay)
            if core.closed:
                return None
            if self.woken.is_set():
                self.schedule.woken()  # reconnect_now: the short schedule starts over too
            core.set_state(ConnectionState.CONNECTING)
            try:
                ws, welcome = await self._open()
            except ClientError as exc:
                if final_refusal(exc):
                    log.warning("%s: the server refused us: %s", self.core.name, exc)
                    self._end(exc)
                    return None
                reason = exc.msg
                if not self.schedule.reconnect_failed(exc, loop.time()):
                    log.info("%s: %s; trying %s", core.name, reason,
                             self.schedule.servers.current)
                continue
            if core.closed:  # close() came while we were signing in
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(ws.close(), 3)
                return None
            self._welcomed(ws, welcome)
            return ws
