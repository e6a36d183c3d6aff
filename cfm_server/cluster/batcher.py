"""Redis commands of one loop turn go out in one pipeline: the cluster's group commit.

Every call queues its command and returns a future. The first call of a loop turn
schedules a flush for the end of the turn; the flush sends the whole queue as one
pipeline (no MULTI: each script is atomic by itself) and resolves each future with its
reply. One pipeline is in flight at a time, so the commands of a node reach Redis in the
order they were made (a sender's messages keep their order); whatever queues while one is
in flight goes out together in the next. With ``appendfsync always`` Redis fsyncs once
per event-loop cycle, so a pipeline of many appends costs one fsync.

When Redis cannot be reached, the calls of the failed pipeline and every call made until
a background probe reaches Redis again fail at once with :class:`ClusterUnavailable`
(``retry_ms`` = time to the next probe); the probe backs off with jitter and the batcher
resumes by itself.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from redis import exceptions as rx
from redis.asyncio import Redis

from cfm_server.cluster.errors import ClusterError, ClusterUnavailable
from cfm_server.cluster.scripts import Script

log = logging.getLogger(__name__)

# Replies that mean "not now" rather than "never": the command did not run.
_RETRYABLE_PREFIXES = ("LOADING", "MISCONF", "OOM", "READONLY", "TRYAGAIN", "CLUSTERDOWN",
                       "MASTERDOWN", "BUSY")
_RETRYABLE_ERRORS = (rx.TryAgainError, rx.ClusterDownError, rx.ReadOnlyError,
                     rx.OutOfMemoryError, rx.BusyLoadingError)
CONNECTION_ERRORS = (rx.ConnectionError, rx.TimeoutError, OSError, asyncio.TimeoutError)


async def _exchange(conn: Any, commands: list[tuple[Any, ...]]) -> list[Any]:
    await conn.send_packed_command(conn.pack_commands(commands), check_health=False)
    replies: list[Any] = []
    for _ in commands:
        try:
            # No per-reply timer (the client has no socket timeout): the caller bounds
            # the whole exchange.
            replies.append(await conn.read_response())
        except rx.ResponseError as exc:
            replies.append(exc)
    return replies


@dataclass(slots=True)
class _Call:
    args: tuple[Any, ...]
    future: asyncio.Future[Any]
    script: Script | None = None
    convert: Callable[[Any], Any] | None = None


class Batcher:
    def __init__(self, client: Redis, *, timeout: float = 5.0,
                 backoff: tuple[float, float] = (0.05, 2.0)) -> None:
        self._client = client
        self._timeout = timeout
        self._backoff = backoff
        self._queue: list[_Call] = []
        self._flush_scheduled = False
        self._sender: asyncio.Task[None] | None = None
        self._probe: asyncio.Task[None] | None = None
        self._next_probe = 0.0  # monotonic time of the next probe while down
        self.pipelines = 0  # how many pipelines went out (for tests and metrics)

    @property
    def down(self) -> bool:
        return self._probe is not None

    def call(self, *args: Any, convert: Callable[[Any], Any] | None = None) -> asyncio.Future[Any]:
        return self._enqueue(_Call(args, asyncio.get_running_loop().create_future(),
                                   convert=convert))

    def eval(self, script: Script, keys: list[str], argv: list[Any],
             convert: Callable[[Any], Any] | None = None) -> asyncio.Future[Any]:
        args = ("EVALSHA", script.sha, len(keys), *keys, *argv)
        return self._enqueue(_Call(args, asyncio.get_running_loop().create_future(), script,
                                   convert))

    async def close(self) -> None:
        tasks = {t for t in (self._probe, self._sender) if t is not None}
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5.0)
        self._fail(self._queue, ClusterUnavailable("the cluster engine is closed", 1000))
        self._queue = []

    # --- sending -----------------------------------------------------------------------

    def _enqueue(self, call: _Call) -> asyncio.Future[Any]:
        if self._probe is not None:
            call.future.set_exception(self._unavailable("Redis is unreachable"))
            return call.future
        self._queue.append(call)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)
        return call.future

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._sender is None and self._queue:
            self._sender = asyncio.create_task(self._send_all())

    async def _send_all(self) -> None:
        try:
            while self._queue and self._probe is None:
                batch, self._queue = self._queue, []
                await self._send(batch)
        finally:
            self._sender = None

    async def _send(self, batch: list[_Call]) -> None:
        todo = batch
        for _ in range(3):  # NOSCRIPT → load → again; twice in a row means a flapping server
            try:
                replies = await self._pipeline([c.args for c in todo])
            except CONNECTION_ERRORS as exc:
                self._went_down(exc)
                self._fail(batch, self._unavailable(f"Redis is unreachable: {exc}"))
                return
            retry: list[_Call] = []
            for call, reply in zip(todo, replies, strict=True):
                if isinstance(reply, rx.NoScriptError) and call.script is not None:
                    retry.append(call)
                else:
                    self._settle(call, reply)
            if not retry:
                return
            try:
                for script in {c.script.sha: c.script for c in retry if c.script}.values():
                    await self._load_script(script)
            except CONNECTION_ERRORS as exc:
                self._went_down(exc)
                self._fail(retry, self._unavailable(f"Redis is unreachable: {exc}"))
                return
            todo = retry
        self._fail(todo, ClusterError("Redis keeps forgetting the scripts (NOSCRIPT)"))

    async def _bounded(self, request: Awaitable[Any]) -> Any:
        """A single request under the batcher's deadline (the client has no socket
        timeout); a cancelled read makes redis-py drop that connection."""
        task = asyncio.ensure_future(request)
        try:
            await asyncio.wait({task}, timeout=self._timeout)
        finally:  # also when we are cancelled: the request must not outlive us
            if not task.done():
                task.cancel()
                await asyncio.wait({task}, timeout=1.0)
        if task.cancelled():
            raise rx.TimeoutError(f"no reply from Redis within {self._timeout} s")
        return task.result()

    async def _load_script(self, script: Script) -> None:
        await self._bounded(self._client.script_load(script.source))

    async def _ping(self) -> None:
        await self._bounded(self._client.ping())

    async def _pipeline(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        return await self._pipeline_on(self._client, commands)

    async def _pipeline_on(self, client: Redis, commands: list[tuple[Any, ...]]) -> list[Any]:
        """Send the commands in one write and read every reply (an error reply is
        returned, not raised). One deadline bounds the whole exchange: a socket timeout
        would arm a timer per reply, a fifth of the node's cost per append.
        A connection left with unread replies (deadline, cancellation, broken socket) is
        closed, never reused, so no late reply can be read as another command's."""
        pool = client.connection_pool
        taken: list[Any] = []

        async def exchange() -> list[Any]:
            # Inside the deadline: connecting includes a handshake that reads replies.
            conn = await pool.get_connection()
            taken.append(conn)
            return await _exchange(conn, commands)

        self.pipelines += 1
        clean = False
        try:
            replies = await self._bounded(exchange())
            clean = True
            return replies
        finally:
            for conn in taken:
                if not clean:
                    await conn.disconnect(nowait=True)
                await pool.release(conn)

    def _settle(self, call: _Call, reply: Any) -> None:
        if call.future.done():
            return
        if isinstance(reply, Exception):
            text = str(reply)
            if isinstance(reply, rx.MovedError):  # a plain redis:// URL on a cluster node
                call.future.set_exception(ClusterError(
                    f"Redis is a Redis Cluster (MOVED {text}): use a redis+cluster:// URL"))
                return
            # redis-py strips the code of the errors it knows (TRYAGAIN, CLUSTERDOWN …).
            if isinstance(reply, (*CONNECTION_ERRORS, *_RETRYABLE_ERRORS)) \
                    or text.startswith(_RETRYABLE_PREFIXES):
                call.future.set_exception(self._unavailable(f"Redis refused: {text}"))
            else:
                call.future.set_exception(ClusterError(f"Redis answered {call.args[0]}: {text}"))
            return
        try:
            call.future.set_result(call.convert(reply) if call.convert else reply)
        except Exception as exc:  # a reply of an unexpected shape
            call.future.set_exception(ClusterError(f"unexpected reply to {call.args[0]}: {exc}"))

    @staticmethod
    def _fail(calls: list[_Call], exc: Exception) -> None:
        for call in calls:
            if not call.future.done():
                call.future.set_exception(exc)

    # --- down and back up --------------------------------------------------------------

    def _unavailable(self, msg: str) -> ClusterUnavailable:
        wait = max(self._next_probe - time.monotonic(), 0.0)
        return ClusterUnavailable(msg, retry_ms=max(100, int(wait * 1000)))

    def _went_down(self, exc: BaseException) -> None:
        if self._probe is None:
            log.warning("Redis unreachable (%s); retrying with back-off", exc)
            self._next_probe = time.monotonic() + self._backoff[0]
            self._probe = asyncio.create_task(self._probe_until_up())
        # Calls queued while the failed pipeline was in flight fail like it.
        queued, self._queue = self._queue, []
        self._fail(queued, self._unavailable(f"Redis is unreachable: {exc}"))

    async def _probe_until_up(self) -> None:
        first, cap = self._backoff
        delay = first
        while True:
            self._next_probe = time.monotonic() + delay
            await asyncio.sleep(delay)
            try:
                await self._ping()
            except (*CONNECTION_ERRORS, rx.ResponseError) as exc:
                delay = min(cap, delay * 2) * random.uniform(0.75, 1.25)
                log.debug("Redis still unreachable: %s", exc)
                continue
            log.info("Redis reachable again")
            self._probe = None
            return
