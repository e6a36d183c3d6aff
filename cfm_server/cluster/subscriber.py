"""The node's one pub/sub connection, watched by its own ping.

redis-py's health check does not notice a half-open socket (the peer gone without a FIN
or RST: a cut cable, a frozen VM, a dropped NAT entry), so the connection would wait for
messages forever. The watchdog sends a PING every ``ping_interval`` and declares the
connection dead when nothing at all arrives within ``ping_timeout``. A dead or dropped
connection is thrown away; a new one subscribes to every channel again and, once Redis
confirmed them all, ``on_connected`` runs: the broker re-reads each room's head and fills
what it missed while the connection was gone. Reconnects back off with jitter. A lost
connection and the first reply on a new one are told to the node's :class:`Outage`
(which logs the outage once), not logged here at each attempt.

The connection is redis-py's (it connects: TLS, AUTH, SELECT), but its replies are read
here, a socket read at a time, with a hiredis reader: redis-py's ``PubSub.get_message``
costs a health check, a lock, a timeout and a dict per message, about a fifth of a
node's time under fan-out, where a read of a busy socket brings dozens of messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable

import hiredis
from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection

from cfm_server.cluster.batcher import CONNECTION_ERRORS
from cfm_server.cluster.outage import Outage

log = logging.getLogger(__name__)


# A socket read brings what has arrived, up to this much (many messages at once).
READ_SIZE = 65536
_PING = b"*1\r\n$4\r\nPING\r\n"


class _Dead(Exception):
    """The watchdog's verdict: nothing came back in time."""


class _Refused(Exception):
    """Redis answered a command of ours with an error."""


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
        outage: Outage | None = None,
        part: str = "pub/sub",
    ) -> None:
        self._client = client
        self._outage = outage if outage is not None else Outage()
        self._part = part  # its name in the outage's lines
        self._on_message = on_message
        self._on_connected = on_connected
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self._backoff = backoff
        self._channels: set[str] = set()
        self._wanted: set[bytes] = set()  # the same, as messages name them
        self._confirmed: set[str] = set()  # on the current connection
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._conn: AbstractConnection | None = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
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
        return self._writer is not None

    async def subscribe(self, channel: str, timeout: float) -> None:
        """Subscribe and wait until Redis confirmed it (messages published after that
        reach us); raises TimeoutError if no connection confirmed it in time (the
        channel stays wanted: the next connection subscribes to it)."""
        self._channels.add(channel)
        self._wanted.add(channel.encode())
        if channel in self._confirmed:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(channel, []).append(waiter)
        self._send("SUBSCRIBE", channel)  # a failure shows in the reader
        await asyncio.wait({waiter}, timeout=timeout)
        if not waiter.done():
            waiter.cancel()
            raise TimeoutError(f"Redis did not confirm the subscription within {timeout} s")
        waiter.result()

    async def unsubscribe(self, channel: str) -> None:
        self._channels.discard(channel)
        self._wanted.discard(channel.encode())
        self._confirmed.discard(channel)
        for waiter in self._waiters.pop(channel, []):
            waiter.cancel()
        self._send("UNSUBSCRIBE", channel)

    def _send(self, *args: str) -> None:
        """A command on the connection, if there is one (its reply comes to the reader).
        Not drained: the commands are small, and a peer that stops reading is the
        watchdog's to find."""
        conn, writer = self._conn, self._writer
        if conn is None or writer is None or writer.is_closing():
            return
        with contextlib.suppress(*CONNECTION_ERRORS):
            writer.writelines(conn.pack_command(*args))

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
                self._outage.down(self._part, exc)
            except _Refused as exc:  # an ACL, a Redis that is not one: the operator's
                log.error("Redis refused a pub/sub command (%s); reconnecting", exc)
            except Exception:  # whatever it was, the node must not stay deaf
                log.exception("pub/sub connection failed; reconnecting")
            finally:
                await self._discard()
            await asyncio.sleep(delay * random.uniform(0.75, 1.25))
            delay = min(cap, delay * 2)

    async def _connect(self) -> None:
        self.connects += 1
        # Connecting includes a handshake that waits for replies, and the client has no
        # socket timeout: the watchdog's deadline bounds it.
        opening = asyncio.ensure_future(self._open())
        try:
            await asyncio.wait({opening}, timeout=self.ping_timeout)
        finally:
            if not opening.done():
                opening.cancel()
                await asyncio.wait({opening}, timeout=1.0)
        if opening.cancelled():
            raise _Dead(f"no connection within {self.ping_timeout} s")
        opening.result()

    async def _open(self) -> None:
        # A connection of its own, outside the pool's count: made, used and closed here.
        conn = self._conn = self._client.connection_pool.make_connection()
        await conn.connect()
        # redis-py keeps its streams in these two attributes (4.2 to 8.x, every
        # connection class: TCP, TLS, Unix socket); a version without them fails here,
        # loudly, on every connect.
        reader, writer = getattr(conn, "_reader", None), getattr(conn, "_writer", None)
        if not isinstance(reader, asyncio.StreamReader) or \
                not isinstance(writer, asyncio.StreamWriter):
            raise TypeError("this redis-py's connection has no _reader/_writer streams")
        self._reader, self._writer = reader, writer
        if self._channels:
            self._send("SUBSCRIBE", *self._channels)
        else:
            writer.write(_PING)  # a dead Redis shows now

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
        reader = self._reader
        assert reader is not None
        replies = hiredis.Reader()
        wanted, on_message, heard = self._wanted, self._on_message, self._heard
        data = await reader.read(READ_SIZE)
        if data:  # Redis answered this connection: reachable again
            self._outage.up(self._part)
        while True:
            if not data:
                raise ConnectionError("Redis closed the pub/sub connection")
            replies.feed(data)
            while (reply := replies.gets()) is not False:
                if type(reply) is list and reply[0] == b"message":
                    # What was published before an unsubscribe can still be on the way:
                    # once unsubscribe has returned, nothing more of that channel is
                    # handed on.
                    if reply[1] in wanted:
                        on_message(reply[1], reply[2])
                elif type(reply) is list:  # subscribe, unsubscribe, pong (subscribed)
                    if reply[0] == b"subscribe":
                        self._confirm(reply[1].decode())
                elif isinstance(reply, hiredis.ReplyError):
                    raise _Refused(str(reply))
                # else: PONG, while subscribed to nothing
            heard.set()
            data = await reader.read(READ_SIZE)

    def _confirm(self, channel: str) -> None:
        if channel not in self._channels:
            return  # unsubscribed since
        self._confirmed.add(channel)
        for waiter in self._waiters.pop(channel, []):
            if not waiter.done():
                waiter.set_result(None)

    async def _watch(self) -> None:
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
        writer = self._writer
        assert writer is not None
        writer.write(_PING)
        await self._heard.wait()

    async def _discard(self) -> None:
        conn, self._conn = self._conn, None
        self._reader = self._writer = None
        self._confirmed.clear()
        if conn is None:
            return
        # A half-open socket must not hold us up: drop it without a goodbye.
        closing = asyncio.ensure_future(conn.disconnect(nowait=True))
        await asyncio.wait({closing}, timeout=1.0)
        if not closing.done():
            closing.cancel()
        closing.add_done_callback(_ignore_outcome)


def _ignore_outcome(task: asyncio.Future[None]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved, so never reported as unretrieved
