"""One connection: the read loop (the hello handshake: handshake.py), limits, outbound bytes.

Outbound frames never wait: ``send`` frames the bytes as a WebSocket message (once per
message for a fan-out: ``send_framed``), appends them to the session's queue and marks
the session in the :class:`~cfm_server.outbox.Outbox`, which writes each marked
session's queue once per loop turn (why: outbox.py). Frames of one session stay in
order; ``close`` writes the queue before its close frame. A session whose transport
holds more than ``config.send_buffer`` unsent bytes after its write is too slow a
reader and is closed with 1013; nobody else waits for it.

The read loop never awaits a commit either: the hub acks a ``say`` from the commit's
done-callback, so a client that pipelines many says gets them stored in one group
commit rather than one commit each.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Awaitable, Iterator, Sized
from typing import TYPE_CHECKING, Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from cfm_common.codec import decode_client, encode
from cfm_common.errors import ProtocolError
from cfm_common.frames import Error, ServerFrame
from cfm_common.rules import RATE_KIND, CloseCode, ErrorCode
from cfm_server.admission import ChargeLater
from cfm_server.handshake import handshake
from cfm_server.hub import Hub, RateLimited
from cfm_server.limits import SessionLimits
from cfm_server.outbox import Outbox
from cfm_server.pages import AnswerItem
from cfm_server.wsconn import MeteredConnection
from cfm_server.wsframe import frame_binary

if TYPE_CHECKING:
    from cfm_server.config import ServerConfig
    from cfm_server.metrics import Metrics
    from cfm_server.state import User

log = logging.getLogger(__name__)

# Frames whose rate-limit refusals do not count toward the 4008 close: a read mark answers
# traffic the client received rather than started (its rate follows the rate others
# write at), so refusing the surplus is enough — counting it would let a chatty peer get
# a reader disconnected. The inbound byte budget, which does count, still bounds a flood.
UNCOUNTED_BREACHES = frozenset({"read"})


# Answers (a history page, a join's joined and replay, a members page) a session may have
# waiting to be produced; a join, history or members frame beyond them is answered
# rate_limited. Above the join and history bursts together (a client that rejoins all
# its rooms at once is not refused), and each costs about a kilobyte while it waits.
MAX_PENDING_ANSWERS = 100
ANSWERED = frozenset(("join", "history", "members", "search"))


class _Answer:
    """An answer waiting in a session's queue: its page source, and the read it waits for."""

    __slots__ = ("pages", "ref", "waiting")

    def __init__(self, pages: Iterator[AnswerItem], ref: str | None) -> None:
        self.pages = pages
        self.ref = ref
        self.waiting: asyncio.Future[Any] | None = None


class Session:
    __slots__ = (
        "_close_task",
        "_held",
        "_out",
        "_pump_handle",
        "closing",
        "config",
        "held",
        "hub",
        "id",
        "ip",
        "limits",
        "metrics",
        "outbox",
        "pending_answers",
        "quiet",
        "send_buffer",
        "user",
        "ws",
    )

    def __init__(self, ws: ServerConnection, hub: Hub, config: ServerConfig,
                 metrics: Metrics, outbox: Outbox | None = None) -> None:
        self.ws = ws
        self.outbox = outbox if outbox is not None else Outbox()
        # Framed messages waiting for the outbox's flush. This and ``_held`` are None
        # while empty, which an idle session mostly is: their empty containers were
        # ~0.8 KB of every idle connection.
        self._out: list[bytes] | None = None
        # Behind an answer still being produced, later frames wait in order (framed bytes,
        # or the page iterator of the next answer); ``held`` is their bytes.
        self._held: collections.deque[bytes | _Answer] | None = None
        self.held = 0
        self.pending_answers = 0
        self._pump_handle: asyncio.Handle | None = None
        self.hub = hub
        self.config = config
        self.metrics = metrics
        self.id = ""
        # The client's address (a trusted proxy's forwarded one), set by the server: the
        # per-address sign-up limit and the log.
        self.ip = ""
        self.user: User | None = None
        self.quiet = False  # hello.quiet: no member frames nor room-only presence
        self.limits = SessionLimits(config, time.monotonic())
        self.send_buffer = config.send_buffer
        self.closing = False
        self._close_task: asyncio.Task[None] | None = None
        if isinstance(ws, MeteredConnection):
            ws.session = self

    # --- outbound ------------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        """Queue one binary message for this turn's write; never waits."""
        self.send_framed(frame_binary(data))

    def send_framed(self, framed: bytes) -> None:
        """Queue a message already framed by :func:`frame_binary` (shared by a fan-out)."""
        if self.closing or self.ws.protocol.state is not State.OPEN:
            return
        held = self._held
        if held:  # behind an answer being produced: keep the order
            held.append(framed)
            self.held += len(framed)
            if (self.held + self.queued() + self.ws.transport.get_write_buffer_size()
                    > self.send_buffer):
                self.too_slow()
            return
        # (``_queue``, inlined: this runs once per recipient of every message)
        out = self._out
        if out is None:
            self._out = [framed]
            self.outbox.mark(self)
        else:
            out.append(framed)

    def _queue(self, framed: bytes) -> None:
        out = self._out
        if out is None:
            self._out = [framed]
            self.outbox.mark(self)
        else:
            out.append(framed)

    def queued(self) -> int:
        """Bytes queued for this turn's write (not counted as they come: that is the hot
        path; only answers and the held frames behind them need the figure)."""
        out = self._out
        return sum(map(len, out)) if out is not None else 0

    def write_queued(self) -> None:
        """Write every frame queued since the last turn at once; check the send bound."""
        out = self._out
        if out is None:
            return
        self._out = None
        ws = self.ws
        # Closing or closed: the peer gets no more messages (a close we start writes the
        # queue first, see ``close``).
        if ws.protocol.state is not State.OPEN:
            return
        transport = ws.transport
        if transport.is_closing():
            return
        data = out[0] if len(out) == 1 else b"".join(out)
        pending = transport.get_write_buffer_size()
        if pending and pending + len(data) > self.send_buffer:
            # The kernel takes nothing more (the transport holds bytes already): never
            # more than send_buffer queued to a reader. This turn's frames are dropped
            # with the reader, which could not take them.
            self.too_slow()
            return
        try:
            transport.write(data)
        except Exception as exc:  # a transport that broke under us: the read loop ends it
            log.debug("send to %s failed: %s", self.id, exc)
            return
        if not pending and transport.get_write_buffer_size() > self.send_buffer:
            # A single turn's frames (answers are paged, so a burst of live messages)
            # beyond what the kernel took at once.
            self.too_slow()

    # --- answers produced as the reader drains -----------------------------------------

    def answer(self, pages: Iterator[AnswerItem], ref: str | None = None) -> None:
        """Send an answer of pages (framed bytes, about ``page_bytes`` each), one a loop
        turn while the output is under half of ``send_buffer``: produced as the reader
        drains it, never queued whole (a reader that reads is never closed for it). Later
        frames wait behind it, in order; a future item (a read under way: ``AnswerItem``)
        holds it until done. One that fails ends with ``internal`` naming ``ref``.
        Nothing once the connection is gone (``lost``)."""
        if self.closing or self.ws.protocol.state is State.CLOSED:
            return
        if self._held is None:
            self._held = collections.deque()
        self._held.append(_Answer(pages, ref))
        self.pending_answers += 1
        self.pump_soon()

    def pump_soon(self) -> None:
        if self._pump_handle is None and self._held:
            self._pump_handle = asyncio.get_running_loop().call_soon(self._pump)

    def _pump(self) -> None:
        self._pump_handle = None
        held = self._held
        if held is None:
            return
        if self.ws.protocol.state is State.CLOSED:  # (lost() drops them at once)
            self._drop_held()
            return
        while held and not self.closing:
            item = held[0]
            if isinstance(item, bytes):
                held.popleft()
                self.held -= len(item)
                self._queue(item)
                continue
            if item.waiting is not None:
                if not item.waiting.done():
                    return  # its done-callback pumps again
                item.waiting = None
            ws = self.ws
            if ws.transport.get_write_buffer_size() + self.queued() > self.send_buffer >> 1:
                if not ws.paused:  # else resume_writing pumps (MeteredConnection)
                    self.pump_soon()
                return
            try:
                page = next(item.pages, None)
            except (Exception, asyncio.CancelledError) as exc:  # (a read cancelled: below)
                held.popleft()
                self.pending_answers -= 1
                self._answer_failed(exc, item.ref)
                continue
            if page is None:
                held.popleft()
                self.pending_answers -= 1
                continue
            if not isinstance(page, bytes):  # a read under way: on when it is done
                item.waiting = page
                page.add_done_callback(self._read_done)
                return
            self._queue(page)
            self.pump_soon()  # the next page in a later turn: others get theirs between
            return
        if not held and self._held is held:
            self._held = None  # every answer done: no empty deque kept while idle

    def _read_done(self, _: object) -> None:
        self.pump_soon()

    def _answer_failed(self, exc: Exception, ref: str | None) -> None:
        if isinstance(exc, RateLimited):  # the user's read budget ran out (read_budget)
            self.send_error(ErrorCode.RATE_LIMITED, exc.why or "", exc.ref, exc.retry_ms)
            return self.count_abuse()
        retry_ms = getattr(exc, "retry_ms", None)  # a store out of reach for now
        if isinstance(exc, asyncio.CancelledError):
            # A read the answer waited for was called off (a cluster node's subscription
            # to a room, undone as the last member here signed out): try again.
            exc, retry_ms = RuntimeError("its read was called off"), 1000
        if retry_ms is None:
            log.error("session %s: an answer failed", self.id or "-", exc_info=exc)
        else:
            log.warning("session %s: an answer could not be read: %s", self.id or "-", exc)
        self.send_error(ErrorCode.INTERNAL, "the server could not read that now; try again",
                        ref, retry_ms)

    def lost(self) -> None:
        """The connection is gone (``MeteredConnection.connection_lost``): what was still
        to be produced for it is dropped. A client that asks for answers and hangs up
        (100 replays of a big room, say) must not keep the node reading pages, from the
        store or Redis, that nobody will receive; a frame read after this (websockets
        hands on what it had received) gets no answer either."""
        self._out = None
        self._drop_held()

    def _drop_held(self) -> None:
        self._held = None
        self.held = 0
        self.pending_answers = 0

    def too_slow(self) -> None:
        """The reader is over its output bound: close it (1013) without writing more."""
        if self.closing:
            return
        self._out = None
        self._drop_held()
        log.info("session %s is too slow a reader: closing it (1013)", self.id or "-")
        self.close(CloseCode.TRY_AGAIN_LATER, "too slow a reader")
        if isinstance(self.ws, MeteredConnection):
            self.ws.stop_reading()
            self.ws.abort_later()

    def send_frame(self, frame: ServerFrame) -> None:
        self.send(encode(frame))
        self.metrics.count_out(frame.T)

    def send_error(self, code: ErrorCode | str, msg: str, ref: str | None,
                   retry_ms: int | None = None) -> None:
        code = ErrorCode(code)
        self.send(encode(Error(code.value, msg, ref, retry_ms)))
        self.metrics.count_out("error")
        self.metrics.error[code.value].inc()

    def close(self, code: int, reason: str = "") -> None:
        """Start the closing handshake with ``code``; later sends are dropped."""
        if self.closing:
            return
        held = self._held
        while held and isinstance(held[0], bytes):  # frames ready behind a finished answer
            item = held.popleft()
            self.held -= len(item)
            self._queue(item)
        self.write_queued()  # what was queued before the close goes out before it
        if self.closing:  # that write found a reader too slow and closed it (1013)
            return
        self.closing = True
        self._drop_held()
        self.metrics.closes.labels(str(int(code))).inc()
        self._close_task = asyncio.get_running_loop().create_task(self.ws.close(code, reason))

    # --- inbound -------------------------------------------------------------------------

    async def run(self) -> None:
        """Serve the connection until it closes. The caller signs the session out."""
        try:
            if await handshake(self):
                write_room = self.hub.write_room
                async for data in self.ws:
                    if isinstance(data, str):
                        self.close(CloseCode.UNSUPPORTED_DATA, "frames are binary msgpack")
                        break
                    if not self.over_budget(data):
                        later = self._on_frame(data)
                        if later is not None:
                            await later  # the session's next frame waits for it
                    if self.closing:
                        break
                    # A cluster node with more writes queued than Redis takes at once
                    # reads no more frames until they go out (cluster/batcher.py).
                    if write_room is not None and (room := write_room()) is not None:
                        await room
        except ConnectionClosed:
            pass
        if self._close_task is not None:
            await self._close_task

    def over_budget(self, data: bytes) -> bool:
        """Spend the inbound budget before decoding; True if the frame is dropped unread.

        Decoding is the dear part of a frame (a valid map of tiny nested containers takes
        far longer to unpack than to send), so the budget is checked first. The answer
        has no ``ref``: nothing of the frame was read.
        """
        retry_ms = self.limits.check_bytes(len(data), time.monotonic())
        if not retry_ms:
            return False
        self.metrics.count_in("over_budget")
        self.send_error(ErrorCode.RATE_LIMITED, "sending too fast: a frame was dropped unread",
                        None, retry_ms)
        self.count_abuse()
        return True

    def _on_frame(self, data: bytes) -> Awaitable[None] | None:
        try:
            frame = decode_client(data, max_text=self.config.max_text)
        except ProtocolError as exc:
            self.metrics.count_in("invalid")
            self.send_error(exc.code, exc.msg, exc.ref)
            self.count_abuse()
            return
        t = frame.T
        self.metrics.count_in(t)
        ref = getattr(frame, "id", None) or t
        kind = RATE_KIND.get(t)
        if kind is not None:
            retry_ms = self.limits.check(kind, time.monotonic())
            if not retry_ms and t in ANSWERED and self.pending_answers >= MAX_PENDING_ANSWERS:
                retry_ms = 1000  # it asked for more than it has read yet
            if retry_ms:
                self.send_error(ErrorCode.RATE_LIMITED, f"too many {t} frames", ref, retry_ms)
                if t not in UNCOUNTED_BREACHES:
                    self.count_abuse()
                return None
        barrier = self.hub.barrier(self, frame)
        if barrier is not None:
            return self._handle_after(barrier, frame, ref)
        return self._handle(frame, ref, retry=True)

    async def _handle_after(self, barrier: Awaitable[None], frame: Any, ref: str) -> None:
        """Handled once the node caught up with other nodes (``Hub.barrier``)."""
        await barrier
        if not self.closing:
            later = self._handle(frame, ref, retry=True)
            if later is not None:
                await later

    def _handle(self, frame: Any, ref: str, retry: bool) -> Awaitable[None] | None:
        mark = self.hub.write_mark()
        if mark is None:  # a single node
            return self._handle_frame(frame, ref, retry)
        held, out = _length(self._held), _length(self._out)
        later = self._handle_frame(frame, ref, retry)
        gate = self.hub.written_since(mark)
        if gate is not None:
            self._hold_behind(gate, held, out)
        return later

    def _hold_behind(self, gate: Awaitable[None], held: int, out: int) -> None:
        """What the session was sent since its held and queued frames were ``held`` and
        ``out`` long waits, in order, for ``gate`` (Redis has what the frame changed)."""
        if _length(self._held) < held or self.closing:
            return  # dropped meanwhile (closing)
        gate_item = _Answer(iter((gate,)), None)  # type: ignore[arg-type]
        if self._held is None:  # (made when first used: see __init__)
            self._held = collections.deque()
        if held:
            self._held.insert(held, gate_item)
        else:
            queued = self._out
            moved = queued[out:] if queued is not None else []
            if queued is not None:
                del queued[out:]
            self._held.extendleft(reversed(moved))
            self.held += sum(map(len, moved))
            self._held.appendleft(gate_item)
        self.pending_answers += 1
        self.pump_soon()

    def _handle_frame(self, frame: Any, ref: str, retry: bool) -> Awaitable[None] | None:
        t = frame.T
        try:
            self.hub.handle(self, frame)
        except ProtocolError as exc:
            caught_up = self.hub.catch_up(exc.code) if retry else None
            if caught_up is not None:
                return self._handle_caught_up(caught_up, frame, ref)
            self.send_error(exc.code, exc.msg, exc.ref or ref)
            self.count_abuse()
        except RateLimited as exc:  # the refused request is this frame: its own ref
            self.send_error(ErrorCode.RATE_LIMITED, exc.why or f"too many {t} frames", ref,
                            exc.retry_ms)
            self.count_abuse()
        except ChargeLater as later:
            return self._handle_charged(later, frame, ref, retry)
        except Exception:
            # A bug or a failing store must not take the connection (or the server) down.
            log.exception("handling %s from %s failed", t, self.id)
            self.send_error(ErrorCode.INTERNAL, "the server failed to handle this frame", ref)
        return None

    async def _handle_caught_up(self, caught_up: Awaitable[None], frame: Any,
                                ref: str) -> None:
        """A cluster node did not know what the frame names (a user, a room, a
        membership): maybe made on another node a moment ago. Once this node applied
        every change Redis held, the frame is handled again; its error stands if it
        still fails."""
        await caught_up
        if not self.closing:
            again = self._handle(frame, ref, retry=False)
            if again is not None:  # a limit Redis decides
                await again

    async def _handle_charged(self, later: ChargeLater, frame: Any, ref: str,
                              retry: bool) -> None:
        """A limit only Redis can decide (a cluster node, the user's sessions on several
        nodes): the frame is handled again once it did, with its verdict."""
        await later.verdict  # never fails: without Redis the node's own count answers
        if self.closing:
            return
        with later.settled():
            again = self._handle(frame, ref, retry)
        if again is not None:
            await again

    def count_abuse(self) -> None:
        if self.limits.abuse.hit(time.monotonic()):
            name = self.user.name if self.user is not None else "-"
            log.warning("session %s (%s from %s): too many errors, closing it (4008)",
                        self.id or "-", name, self.ip or "-")
            self.close(CloseCode.ABUSE, "too many errors")


def _length(items: Sized | None) -> int:
    """How many a lazily made queue holds (None: not made, none)."""
    return len(items) if items is not None else 0
