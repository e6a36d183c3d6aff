"""Redis commands of one loop turn go out in one pipeline: the cluster's group commit.

Every call queues its command and returns a future. The first call of a loop turn
schedules a flush for the end of the turn; the flush sends the whole queue as one
pipeline (no MULTI: each script is atomic by itself) and resolves each future with its
reply. On one Redis up to two pipelines are in flight (``IN_FLIGHT``), written one after
the other on one connection, so the commands of a node reach Redis in the order they
were made (a sender's messages keep their order) and the replies come back in that
order; whatever queues meanwhile goes out together in the next. With ``appendfsync
always`` Redis fsyncs once per event-loop cycle, so a pipeline of many appends costs one
fsync, and a turn written while Redis fsyncs the one before waits for that fsync, not
for the round trip back to the node and the node's next turn. A Redis Cluster's batcher
keeps one pipeline per master in flight.

Calls made with :meth:`Batcher.eval_each` (the appends) are merged besides: adjacent
calls of one such script go out as one ``EVALSHA`` that runs them one after the other
(append.lua's form), so Redis starts one script for the loop turn's messages, not one
per message, and the node packs and parses one command. On a Redis Cluster only calls
of one slot are merged (``_merge_key``): a script's keys must share a slot there.

Scripts are loaded where they are called (on one Redis; a Redis Cluster's batcher loads
them on every master at the first NOSCRIPT): a pipeline that calls a script its
connection has not loaded yet starts with ``SCRIPT LOAD`` of it (a new connection, so after a
restart of Redis, which forgets them all), so no EVALSHA of it can answer NOSCRIPT while
the commands behind it in the pipeline run. A Redis that forgets a script while
connected (``SCRIPT FLUSH``) answers NOSCRIPT (the call did not run): the batcher sends
those calls again in a pipeline of their own, before anything queued since, but the
commands behind them in the first pipeline have run by then.

Backlog. A node reads its clients' frames as fast as they come, and each say queues an
append: when clients send more than Redis and the node can store, the queue would grow
without end, and every call queued behind it (the node's presence heartbeat among them)
would wait as long. So once ``backlog_limit`` calls are unanswered (queued, or in the
pipelines in flight), :meth:`Batcher.room` hands the sessions something to wait on
before they read their next frame: the node stops reading its clients (their TCP windows
then slow them down) until Redis has answered enough of them. A call waits then behind
at most ``backlog_limit`` others (and one more per session). Counting the pipelines in
flight matters: with two in flight the queue alone is taken too soon to fill, and a
flooded node went on reading says into ever bigger pipelines while its deliveries
starved (8,000 deliveries/s where one in flight, gated on its queue, kept 20,000).

When Redis cannot be reached, the calls of the failed pipeline and every call made until
a background probe reaches Redis again fail at once with :class:`ClusterUnavailable`
(``retry_ms`` = time to the next probe); the probe backs off with jitter and the batcher
resumes by itself. The node's :class:`Outage` is told when Redis went away and when the
probe reached it again (one line each, for the operator).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from redis import exceptions as rx
from redis.asyncio import Redis

try:  # redis-py packs with hiredis when it is there; so do we, without its per-arg work
    from hiredis import pack_command as _pack_command
except ImportError:  # pragma: no cover - hiredis is a dependency
    _pack_command = None

from cfm_server.cluster.errors import ClusterError, ClusterUnavailable
from cfm_server.cluster.outage import Outage
from cfm_server.cluster.roundtrips import RoundTrips
from cfm_server.cluster.scripts import BY_SHA, Script

log = logging.getLogger(__name__)

# Replies that mean "not now" rather than "never": the command did not run.
_RETRYABLE_PREFIXES = ("LOADING", "MISCONF", "OOM", "READONLY", "TRYAGAIN", "CLUSTERDOWN",
                       "MASTERDOWN", "BUSY")
_RETRYABLE_ERRORS = (rx.TryAgainError, rx.ClusterDownError, rx.ReadOnlyError,
                     rx.OutOfMemoryError, rx.BusyLoadingError)
CONNECTION_ERRORS = (rx.ConnectionError, rx.TimeoutError, OSError, asyncio.TimeoutError)
# Pipelines in flight at once on one Redis. The next turn's commands are written while
# Redis still works on the previous pipeline (its AOF fsync, mostly), on the same
# connection: Redis runs one connection's commands in the order they came, and the
# replies come back in that order. A say made while a pipeline is in flight then waits
# in Redis for the fsync under way, not for the whole round trip and the node's turn.
IN_FLIGHT = 2
# At most this many calls in one merged EVALSHA: bounds how long one script holds Redis
# (~10 µs of Redis per append) and the size of one reply.
MERGE_LIMIT = 256
# Calls waiting for the next pipeline before the sessions stop reading (see "Backlog"):
# ~4,000 appends are ~0.1 s of Redis and of the node, and at most a few MB of frames.
BACKLOG_LIMIT = 4096


def _pack(conn: Any, commands: list[tuple[Any, ...]]) -> Any:
    """The commands in RESP. hiredis takes str, bytes and int as they are (what the
    batcher is given); redis-py's own packing first runs its encoder over every argument,
    which cost the node as much as the rest of the exchange. Anything hiredis refuses
    goes the redis-py way (and fails there with redis-py's message if it must)."""
    if _pack_command is not None:
        try:
            return [b"".join([_pack_command(c) for c in commands])]
        except TypeError:
            pass
    return conn.pack_commands(commands)


async def _exchange(conn: Any, commands: list[tuple[Any, ...]]) -> list[Any]:
    await conn.send_packed_command(_pack(conn, commands), check_health=False)
    return await _read(conn, len(commands))


async def _read(conn: Any, count: int) -> list[Any]:
    replies: list[Any] = []
    for _ in range(count):
        try:
            # No per-reply timer (the client has no socket timeout): the caller bounds
            # the whole exchange.
            replies.append(await conn.read_response())
        except rx.ResponseError as exc:
            replies.append(exc)
    return replies


@dataclass(slots=True)
class _Call:
    args: tuple[Any, ...]  # the command; for eval_each, the call's ARGV
    future: asyncio.Future[Any]
    script: Script | None = None
    convert: Callable[[Any], Any] | None = None
    keys: list[str] | None = None  # eval_each: the call's KEYS (None: not merged)


# A command on the wire and the calls it answers; merged: its reply is a list, one
# reply per call.
_Wire = tuple[tuple[Any, ...], list[_Call], bool]


# The pipeline a flight (a task of its own) writes, as the sender waits for it: set in
# the sender's context before the flight's task copies it, so a flight's NOSCRIPT retry
# cannot mark a later flight written.
_WRITTEN: contextvars.ContextVar[asyncio.Future[None] | None] = contextvars.ContextVar(
    "cfm_batcher_written", default=None)


class _Line:
    """The connection the pipelines in flight share, and the last one's outcome (the
    next reads its replies after it: True, or False if it failed)."""

    __slots__ = ("broken", "conn", "last", "users")

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.last: asyncio.Future[bool] | None = None
        self.users = 0
        self.broken = False


def _what(call: _Call) -> Any:
    return call.script.name if call.keys is not None and call.script else call.args[0]


class Batcher:
    in_flight = IN_FLIGHT  # pipelines at once (a Redis Cluster's batcher: one)

    def __init__(self, client: Redis, *, timeout: float = 5.0,
                 backoff: tuple[float, float] = (0.05, 2.0),
                 outage: Outage | None = None, backlog_limit: int = BACKLOG_LIMIT) -> None:
        self._client = client
        self.backlog_limit = backlog_limit
        # Set while fewer than backlog_limit calls are queued (``room``).
        self._roomy = asyncio.Event()
        self._roomy.set()
        self._flying = 0  # calls in the pipelines in flight
        self.outage = outage if outage is not None else Outage()
        self._timeout = timeout
        self._backoff = backoff
        self._queue: list[_Call] = []
        self._flush_scheduled = False
        self._sender: asyncio.Task[None] | None = None
        self._wake: asyncio.Future[None] | None = None  # the sender waits for calls
        self._line: _Line | None = None
        self._probe: asyncio.Task[None] | None = None
        self._next_probe = 0.0  # monotonic time of the next probe while down
        # For /metrics (nodemetrics.py) and tests: pipelines and the commands they carried
        # (a merged EVALSHA is one), and each pipeline's round trip.
        self.pipelines = 0
        self.commands = 0
        self.round_trips = RoundTrips()
        self.overlapped = 0  # pipelines written while another was in flight
        # Bumped when Redis answered NOSCRIPT: what each connection loaded is void.
        self._scripts_gen = 0

    @property
    def down(self) -> bool:
        return self._probe is not None

    @property
    def probe_cap(self) -> float:
        """The longest wait between two probes while Redis is out of reach: how late,
        at most, the batcher notices Redis is back."""
        return self._backoff[1]

    @property
    def backlog(self) -> int:
        """Calls not answered yet: queued for the next pipeline, or in one in flight."""
        return len(self._queue) + self._flying

    def room(self) -> Awaitable[None] | None:
        """None while the backlog is short; else what to wait for before taking more work
        (done when it is short again). See "Backlog" in the module's docstring."""
        if len(self._queue) + self._flying < self.backlog_limit:
            return None
        self._roomy.clear()
        return self._roomy.wait()

    def _backlog_fell(self) -> None:
        if len(self._queue) + self._flying < self.backlog_limit:
            self._roomy.set()

    def _take_queue(self) -> list[_Call]:
        queued, self._queue = self._queue, []
        self._backlog_fell()
        return queued

    def _flight_done(self, calls: int, _flight: object = None) -> None:
        self._flying -= calls
        self._backlog_fell()

    def call(self, *args: Any, convert: Callable[[Any], Any] | None = None) -> asyncio.Future[Any]:
        return self._enqueue(_Call(args, asyncio.get_running_loop().create_future(),
                                   convert=convert))

    def eval(self, script: Script, keys: list[str], argv: list[Any],
             convert: Callable[[Any], Any] | None = None) -> asyncio.Future[Any]:
        args = ("EVALSHA", script.sha, len(keys), *keys, *argv)
        return self._enqueue(_Call(args, asyncio.get_running_loop().create_future(), script,
                                   convert))

    def eval_each(self, script: Script, keys: list[str], argv: list[Any],
                  convert: Callable[[Any], Any] | None = None) -> asyncio.Future[Any]:
        """A call of a script that runs a list of calls (append.lua's form: the calls'
        keys one after the other, the same number for each; in ARGV each call's run led
        by its length; one reply per call, an error reply failing that call alone).
        Adjacent calls of the script share one EVALSHA (see the module's docstring)."""
        return self._enqueue(_Call(tuple(argv), asyncio.get_running_loop().create_future(),
                                   script, convert, keys))

    async def close(self) -> None:
        tasks = {t for t in (self._probe, self._sender) if t is not None}
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5.0)
        self._fail(self._take_queue(), ClusterUnavailable("the cluster engine is closed", 1000))
        self.outage.close()

    # --- sending -----------------------------------------------------------------------

    def _enqueue(self, call: _Call) -> asyncio.Future[Any]:
        if self._probe is not None:
            self._fail([call], self._unavailable("Redis is unreachable", True))
            return call.future
        self._queue.append(call)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)
        return call.future

    def _flush(self) -> None:
        self._flush_scheduled = False
        if not self._queue:
            return
        if self._sender is None:
            self._sender = asyncio.create_task(self._send_all())
        elif self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    async def _send_all(self) -> None:
        """Send the queue, a pipeline at a time, with up to ``in_flight`` of them under
        way: the next is written once the last one was (so they reach Redis in order)."""
        loop = asyncio.get_running_loop()
        flights: set[asyncio.Task[None]] = set()
        try:
            while True:
                if self._queue and self._probe is None and len(flights) < self.in_flight:
                    batch = self._queue
                    self._flying += len(batch)
                    self._take_queue()
                    written: asyncio.Future[None] = loop.create_future()
                    _WRITTEN.set(written)
                    flight = asyncio.create_task(self._send(batch))
                    flights.add(flight)
                    flight.add_done_callback(flights.discard)
                    flight.add_done_callback(functools.partial(self._flight_done, len(batch)))
                    await asyncio.wait({written, flight}, return_when=asyncio.FIRST_COMPLETED)
                    continue
                if not flights:
                    return
                wake = self._wake = loop.create_future()
                await asyncio.wait({wake, *flights}, return_when=asyncio.FIRST_COMPLETED)
                self._wake = None
        except asyncio.CancelledError:
            for flight in flights:
                flight.cancel()
            if flights:
                await asyncio.wait(flights, timeout=1.0)
            raise
        finally:
            self._sender = self._wake = None

    def _wrote(self) -> None:
        """The pipeline being sent is on the wire: the sender may write the next."""
        written = _WRITTEN.get()
        if written is not None and not written.done():
            written.set_result(None)

    async def _send(self, batch: list[_Call]) -> None:
        todo = batch
        for _ in range(3):  # NOSCRIPT → load → again; twice in a row means a flapping server
            wire = self._wire(todo)
            try:
                replies = await self._pipeline([w[0] for w in wire])
            except CONNECTION_ERRORS as exc:
                self._went_down(exc)
                self._fail(batch, self._unavailable(f"Redis is unreachable: {exc}", True))
                return
            retry: list[_Call] = []
            for (_, calls, merged), reply in zip(wire, replies, strict=True):
                if isinstance(reply, rx.NoScriptError) and calls[0].script is not None:
                    retry += calls  # the script did not run: none of its calls did
                elif not merged:
                    self._settle(calls[0], reply)
                elif isinstance(reply, list) and len(reply) == len(calls):
                    for call, each in zip(calls, reply, strict=True):
                        self._settle(call, each)
                else:  # an error for the whole call (OOM, BUSY …) is every call's
                    if not isinstance(reply, Exception):
                        reply = ClusterError(f"{len(calls)} calls answered by {reply!r:.80}")
                    for call in calls:
                        self._settle(call, reply)
            if not retry:
                return
            # Redis forgot its scripts while connected (SCRIPT FLUSH): every connection
            # loads them again, this retry's first.
            self._scripts_gen += 1
            try:
                await self._reload(list({c.script.sha: c.script
                                         for c in retry if c.script}.values()))
            except CONNECTION_ERRORS as exc:
                self._went_down(exc)
                self._fail(retry, self._unavailable(f"Redis is unreachable: {exc}", True))
                return
            todo = retry
        self._fail(todo, ClusterError("Redis keeps forgetting the scripts (NOSCRIPT)"))

    def _wire(self, calls: list[_Call]) -> list[_Wire]:
        """The commands that carry the calls, in the calls' order; a run of adjacent
        ``eval_each`` calls of one script becomes one EVALSHA per merge key (in the
        order of each key's first call; a key's calls keep their order)."""
        wire: list[_Wire] = []
        i, n = 0, len(calls)
        while i < n:
            call = calls[i]
            if call.keys is None:
                wire.append((call.args, [call], False))
                i += 1
                continue
            script = call.script
            assert script is not None
            j = i + 1
            while j < n and calls[j].keys is not None and calls[j].script is script:
                j += 1
            groups: dict[Any, list[_Call]] = {}
            for each in calls[i:j]:
                groups.setdefault(self._merge_key(each), []).append(each)
            for group in groups.values():
                for k in range(0, len(group), MERGE_LIMIT):
                    part = group[k:k + MERGE_LIMIT]
                    keys: list[Any] = []
                    argv: list[Any] = []
                    for each in part:
                        keys += each.keys  # type: ignore[arg-type]
                        argv.append(len(each.args))
                        argv += each.args
                    wire.append((("EVALSHA", script.sha, len(keys), *keys, *argv), part, True))
            i = j
        return wire

    def _merge_key(self, call: _Call) -> Any:
        """Calls of one merge key may share an EVALSHA: on one Redis, all of them."""
        return None

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

    async def _reload(self, scripts: list[Script]) -> None:
        """After NOSCRIPT. On one Redis nothing: the retry's pipeline loads them ahead of
        its calls (``_loads``)."""

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
        if self.in_flight > 1:
            return await self._pipeline_in_line(client, commands)
        pool = client.connection_pool
        taken: list[Any] = []

        async def exchange() -> list[Any]:
            # Inside the deadline: connecting includes a handshake that reads replies.
            conn = await pool.get_connection()
            taken.append(conn)
            # A load that failed shows as its calls' NOSCRIPT: retried (see _send).
            loaded = await self._write(conn, commands)
            return (await _read(conn, loaded + len(commands)))[loaded:]

        clean = False
        try:
            replies = await self._counted(commands, exchange)
            clean = True
            return replies
        finally:
            for conn in taken:
                if not clean:
                    await conn.disconnect(nowait=True)
                await pool.release(conn)

    async def _write(self, conn: Any, commands: list[tuple[Any, ...]]) -> int:
        """Write the commands in one send, behind the ``SCRIPT LOAD`` of each script
        ``conn`` lacks (``_loads``); how many loads went ahead of them."""
        loads = self._loads(conn, commands)
        await conn.send_packed_command(_pack(conn, loads + commands), check_health=False)
        self._wrote()
        return len(loads)

    async def _counted(self, commands: list[tuple[Any, ...]],
                       exchange: Callable[[], Awaitable[list[Any]]]) -> list[Any]:
        """``exchange()`` under the deadline, counted for /metrics: the pipeline, its
        commands and, once answered, its round trip."""
        self.pipelines += 1
        self.commands += len(commands)
        started = time.perf_counter()
        replies = await self._bounded(exchange())
        self.round_trips.observe(time.perf_counter() - started)
        return replies

    async def _pipeline_in_line(self, client: Redis,
                                commands: list[tuple[Any, ...]]) -> list[Any]:
        """``_pipeline_on`` with other pipelines in flight: all on one connection (the
        line), each written at once and its replies read after the previous one's. A
        pipeline that fails (deadline, broken socket) closes the line: the ones behind
        it fail too (their replies cannot be told apart), and the next starts a new one."""
        pool = client.connection_pool
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        held: list[_Line] = []

        async def exchange() -> list[Any]:
            line = self._line
            if line is None or line.broken:
                # Inside the deadline: connecting includes a handshake that reads replies.
                line = self._line = _Line(await pool.get_connection())
            line.users += 1
            held.append(line)
            before, line.last = line.last, done
            if before is not None and not before.done():
                self.overlapped += 1
            conn = line.conn
            loaded = await self._write(conn, commands)
            if before is not None and not await before:
                raise rx.ConnectionError("a pipeline ahead on the connection failed")
            return (await _read(conn, loaded + len(commands)))[loaded:]

        clean = False
        try:
            replies = await self._counted(commands, exchange)
            clean = True
            return replies
        finally:
            if not done.done():
                done.set_result(clean)
            for line in held:
                line.users -= 1
                if not clean and not line.broken:
                    line.broken = True
                    await line.conn.disconnect(nowait=True)
                if line.users == 0:
                    if self._line is line:
                        self._line = None
                    await pool.release(line.conn)

    def _loads(self, conn: Any, commands: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        """``SCRIPT LOAD`` of each script the commands call that ``conn`` has not loaded
        (since it connected, and since the last NOSCRIPT), to go ahead of them."""
        known: tuple[int, set[str]] | None = getattr(conn, "cfm_scripts", None)
        if known is None:  # a connection not seen yet: forget its scripts at a reconnect
            conn.register_connect_callback(self._connected)
        if known is None or known[0] != self._scripts_gen:
            known = conn.cfm_scripts = (self._scripts_gen, set())
        loaded = known[1]
        loads: list[tuple[Any, ...]] = []
        for command in commands:
            if command[0] == "EVALSHA" and command[1] not in loaded:
                loaded.add(command[1])
                loads.append(("SCRIPT", "LOAD", BY_SHA[command[1]].source))
        return loads

    def _connected(self, conn: Any) -> None:
        """redis-py's callback at each (re)connect: a new socket, maybe a new Redis."""
        conn.cfm_scripts = (self._scripts_gen, set())

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
            if isinstance(reply, CONNECTION_ERRORS):  # a Redis Cluster's master away
                call.future.set_exception(self._unavailable(f"Redis is unreachable: {text}",
                                                            True))
            elif isinstance(reply, _RETRYABLE_ERRORS) or text.startswith(_RETRYABLE_PREFIXES):
                call.future.set_exception(self._unavailable(f"Redis refused: {text}"))
            else:
                call.future.set_exception(ClusterError(f"Redis answered {_what(call)}: {text}"))
            return
        try:
            call.future.set_result(call.convert(reply) if call.convert else reply)
        except Exception as exc:  # a reply of an unexpected shape
            call.future.set_exception(ClusterError(f"unexpected reply to {_what(call)}: {exc}"))

    def _fail(self, calls: list[_Call], exc: Exception) -> None:
        if isinstance(exc, ClusterUnavailable) and exc.unreachable:
            self.outage.refused += len(calls)
        for call in calls:
            if not call.future.done():
                call.future.set_exception(exc)

    # --- down and back up --------------------------------------------------------------

    def _unavailable(self, msg: str, unreachable: bool = False) -> ClusterUnavailable:
        """``unreachable``: Redis is out of reach (the outage's line says so), rather
        than answering with a refusal."""
        wait = max(self._next_probe - time.monotonic(), 0.0)
        return ClusterUnavailable(msg, retry_ms=max(100, int(wait * 1000)),
                                  unreachable=unreachable)

    def _went_down(self, exc: BaseException) -> None:
        if self._probe is None:
            self.outage.down("commands", exc)
            self._next_probe = time.monotonic() + self._backoff[0]
            self._probe = asyncio.create_task(self._probe_until_up())
        # Calls queued while the failed pipeline was in flight fail like it.
        self._fail(self._take_queue(), self._unavailable(f"Redis is unreachable: {exc}", True))

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
            self._probe = None
            self.outage.up("commands")
            return
