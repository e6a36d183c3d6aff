"""The server's WebSocket connection: websockets' own, metered from the first byte.

websockets reads every byte, parses every frame and answers every ping by itself, before
the session sees a message. What a connection may make the server do there is bounded
here, in the connection's ``data_received``, before websockets gets the bytes:

- **from accept**: connections per client address are counted when the TCP connection
  is accepted (``ConnectionGuard``), not after the upgrade, so half-open upgrades count
  too; the upgrade request may be at most ``upgrade_max_bytes`` long (HTTP 431), and
  must be done within ``upgrade_timeout`` (websockets' ``open_timeout``);
- **every frame**: :class:`~cfm_server.wsframe.WireMeter` charges each frame (pings,
  pongs, fragments included) to the connection's wire budget before websockets parses
  it; over the budget the connection stops being read until the budget refills, so the
  sender's own TCP window throttles it and the server does no work for it meanwhile;
- **fragments**: at most ``max_fragments`` frames per message (close 1009);
- **output**: the pongs websockets would write must fit in the connection's output bound
  (``send_buffer``, shared with everything the session queues); a ping that does not
  fit closes the connection with 1013 before it is parsed.
"""

from __future__ import annotations

import logging
import random
import struct
import time
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from websockets.asyncio.server import ServerConnection
from websockets.frames import CloseCode as WsCloseCode
from websockets.protocol import State

from cfm_common.rules import CloseCode
from cfm_server.keepalive import KeepaliveWheel
from cfm_server.limits import FRAME_COST, IpCounter, TokenBucket
from cfm_server.wsframe import OUTPUT_FULL, TOO_MANY_FRAGMENTS, WireMeter

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Callable

    from cfm_server.config import ServerConfig
    from cfm_server.metrics import Metrics
    from cfm_server.netaddr import TrustedProxies

log = logging.getLogger(__name__)


class Session(Protocol):
    """What a connection asks of the session it serves (``cfm_server.session.Session``;
    a Protocol, so that this module does not import the session that imports it)."""

    def pump_soon(self) -> None: ...

    def too_slow(self) -> None: ...

    def lost(self) -> None: ...

REFUSED_BUSY = (b"HTTP/1.1 429 Too Many Requests\r\nContent-Type: text/plain\r\n"
                b"Content-Length: 39\r\nConnection: close\r\n\r\n"
                b"too many connections from your address\n")
REFUSED_LARGE = (b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\n"
                 b"Connection: close\r\n\r\n")


class ConnectionGuard:
    """What every connection of one server shares: the per-address count and the limits."""

    def __init__(self, config: ServerConfig, metrics: Metrics, proxies: TrustedProxies,
                 ip_counter: IpCounter,
                 on_refused: Callable[[str, int, str], None] | None = None) -> None:
        self.config = config
        self.metrics = metrics
        self.proxies = proxies
        self.ip_counter = ip_counter
        # (address, HTTP status, why): the server logs and counts it like any refusal.
        self.on_refused = on_refused
        # Every connection's keepalive pings on one timer (None: pings off).
        self.keepalive = (KeepaliveWheel(config.ping_interval, config.ping_timeout or None)
                          if config.ping_interval else None)
        # The guard is a class attribute of this server's connections, not an instance
        # one: see MeteredConnection's note on its instance attributes.
        self._connection_class: type[MeteredConnection] = type(
            "MeteredConnection", (MeteredConnection,), {"guard": self})

    def refused(self, ip: str, status: int, why: str) -> None:
        if self.on_refused is not None:
            self.on_refused(ip, status, why)

    def factory(self, protocol: Any, server: Any, **kwargs: Any) -> MeteredConnection:
        """websockets' ``create_connection``: one :class:`MeteredConnection`."""
        return self._connection_class(protocol, server, **kwargs)

    def new_wire_meter(self) -> WireMeter:
        config = self.config
        bucket = None
        if config.rate_limits:
            # The burst always admits one frame of max_frame bytes.
            burst = max(config.wire_burst, config.max_frame + FRAME_COST,
                        config.control_frame_cost + 125)
            bucket = TokenBucket(config.wire_rate, burst, time.monotonic())
        return WireMeter(bucket, frame_cost=FRAME_COST, control_cost=config.control_frame_cost,
                         max_fragments=config.max_fragments, max_frame=config.max_frame)


class MeteredConnection(ServerConnection):
    """A ``ServerConnection`` whose inbound bytes are charged before websockets sees them.

    Memory per idle connection: CPython shares one key table among the instance dicts of
    a class, and keeps only a values array per instance, while the class's instances
    use fewer than 30 attribute names (CPython 3.11); websockets' connection sets 27.
    With more, every connection gets a dict of its own (1.6 KB rather than ~0.3 KB). So
    this class adds two instance attributes (``meter``, ``session``); the address
    counted at accept is kept in the meter, the guard is a class attribute
    (``ConnectionGuard`` makes a subclass per server), and the rest are class-level
    defaults that only a connection being throttled or ended sets on itself.
    """

    guard: ClassVar[ConnectionGuard]
    session: Session | None = None  # set by the Session that serves it
    refusing = False  # input is dropped unread: the connection is being ended
    _wire_paused = False
    _retry: asyncio.TimerHandle | None = None

    def __init__(self, protocol: Any, server: Any, **kwargs: Any) -> None:
        super().__init__(protocol, server, **kwargs)
        self.meter = self.guard.new_wire_meter()
        # Only resume_writing, iteration, append and remove ever touch it: a list does
        # that in 56 bytes where websockets' empty deque takes ~700.
        self.drain_waiters = []  # type: ignore[assignment]

    @property
    def send_buffer(self) -> int:
        return self.guard.config.send_buffer

    @property
    def counted_ip(self) -> str | None:
        """The address counted at accept, if any."""
        return self.meter.counted_ip

    @counted_ip.setter
    def counted_ip(self, ip: str | None) -> None:
        self.meter.counted_ip = ip

    def forget_handshake(self) -> None:
        """Drop the upgrade's headers once the server has read them (the client's
        address): with the response they are ~4 KB per connection, kept for its life.
        The request object stays: websockets tells frames from the upgrade by it being
        set (and its parser's generator holds it anyway); its headers are emptied."""
        request = self.request
        if request is not None:
            request.headers.clear()
        self.response = None
        self.request_rcvd = None  # type: ignore[assignment]  # awaited in the handshake only

    # --- accept ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        # websockets resumes reading when its message queue drains: not while the wire
        # budget or the end of the connection holds reading stopped.
        self.recv_messages.resume = self._resume_reading
        peer = transport.get_extra_info("peername")
        ip = str(peer[0]) if peer else "?"
        guard = self.guard
        if guard.proxies.trusts(ip):
            return  # counted by the forwarded address after the upgrade (Server._handle)
        if not guard.ip_counter.add(ip):
            guard.refused(ip, 429, "too many connections from that address")
            self._refuse(REFUSED_BUSY)
            return
        self.counted_ip = ip

    def connection_lost(self, exc: Exception | None) -> None:
        if self.guard.keepalive is not None:
            self.guard.keepalive.discard(self)
        if self.counted_ip is not None:
            self.guard.ip_counter.remove(self.counted_ip)
            self.counted_ip = None
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        super().connection_lost(exc)
        if self.session is not None:
            self.session.lost()

    def stop_reading(self) -> None:
        """Nothing more is read: what the peer still sends stays in its own buffers."""
        self.refusing = True
        self.meter.backlog = b""
        self.transport.pause_reading()

    def _refuse(self, response: bytes) -> None:
        """Answer the upgrade with ``response`` and hang up; nothing more is read."""
        self.stop_reading()
        transport = self.transport
        if not transport.is_closing():
            transport.write(response)
            transport.close()

    # --- inbound ---------------------------------------------------------------------

    def _resume_reading(self) -> None:
        if not self.refusing and not self._wire_paused:
            self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        if self.refusing:
            self.transport.pause_reading()
            return
        if self.protocol.state is State.CONNECTING:
            meter = self.meter
            meter.upgrade_bytes += len(data)
            if meter.upgrade_bytes > self.guard.config.upgrade_max_bytes:
                peer = self.transport.get_extra_info("peername")
                self.guard.refused(str(peer[0]) if peer else "?", 431,
                                   "upgrade request too large")
                self._refuse(REFUSED_LARGE)
                return
            super().data_received(data)
            return
        self._admit(data)

    def _admit(self, data: bytes) -> None:
        transport = self.transport
        # The pongs this data makes websockets write must fit beside what the transport
        # holds (what the session queues is checked where it queues it).
        room = self.send_buffer - transport.get_write_buffer_size()
        admitted, retry_ms, verdict = self.meter.admit(data, time.monotonic(), room)
        if admitted:
            super().data_received(admitted)
        if verdict:
            self._end_for(verdict)
            return
        if retry_ms:  # (a backlog without retry_ms is a frame header still incomplete)
            self._wait_for_budget(retry_ms)
        elif self._wire_paused:
            self._wire_paused = False
            # websockets' own back-pressure (a full message queue) wins
            if not self.recv_messages.paused and not self.refusing:
                self.transport.resume_reading()
        if transport.get_write_buffer_size() > self.send_buffer:
            self.overflow()

    def _wait_for_budget(self, retry_ms: int) -> None:
        if not self._wire_paused:
            self._wire_paused = True
            self.guard.metrics.count_in("over_wire_budget")
        self.transport.pause_reading()
        if self._retry is None:
            delay = max(retry_ms, 1) / 1000
            self._retry = self.loop.call_later(delay, self._on_budget)

    def _on_budget(self) -> None:
        self._retry = None
        if not self.refusing and not self.transport.is_closing():
            self._admit(b"")

    def _end_for(self, verdict: str) -> None:
        self.stop_reading()
        if verdict == OUTPUT_FULL:
            self.overflow()
        elif verdict == TOO_MANY_FRAGMENTS:
            log.debug("connection %s: too many fragments", self.counted_ip)
            self.guard.metrics.closes.labels(str(int(CloseCode.MESSAGE_TOO_BIG))).inc()
            self.protocol.fail(CloseCode.MESSAGE_TOO_BIG,
                               f"more than {self.guard.config.max_fragments} fragments")
            self.send_data()
            self.abort_later()

    # --- keepalive (cfm_server/keepalive.py) -------------------------------------------

    def start_keepalive(self) -> None:
        """websockets calls it once the upgrade is done: the server's wheel pings this
        connection instead of a task of its own."""
        wheel = self.guard.keepalive
        if wheel is not None:
            wheel.add(self)

    def keepalive_visit(self, now: float, timeout: float | None) -> None:
        if not self.keepalive_check(now, timeout) and not self.pending_pings:
            self._keepalive_ping(now)

    def keepalive_check(self, now: float, timeout: float | None) -> bool:
        """End the connection (1011, as websockets' keepalive) if its oldest ping has
        waited ``timeout`` without a pong; True if it is ended or ending."""
        if self.protocol.state is not State.OPEN:
            return True
        if timeout is None or not self.pending_pings:
            return False
        _, sent = next(iter(self.pending_pings.values()))
        # (a timer may fire up to the clock's resolution early)
        if now - sent < timeout - 0.001:
            return False
        log.debug("connection %s: no pong within %s s", self.counted_ip, timeout)
        self.protocol.fail(WsCloseCode.INTERNAL_ERROR, "keepalive ping timeout")
        self.send_data()
        self.abort_later()
        return True

    def _keepalive_ping(self, now: float) -> None:
        """What websockets' ``ping()`` does, without awaiting a drain: the pong's future
        is in ``pending_pings``, where its pong (``acknowledge_pings``) or the close
        (``terminate_pending_pings``) settles it."""
        if self.transport.is_closing():
            return
        data = struct.pack("!I", random.getrandbits(32))
        while data in self.pending_pings:
            data = struct.pack("!I", random.getrandbits(32))
        self.pending_pings[data] = (self.loop.create_future(), now)
        self.protocol.send_ping(data)
        self.send_data()

    # --- output ----------------------------------------------------------------------

    def resume_writing(self) -> None:
        super().resume_writing()
        if self.session is not None:
            self.session.pump_soon()  # the reader drained: the next page of an answer

    def overflow(self) -> None:
        """The reader is over its output bound: close 1013, then hang up after
        ``close_timeout`` whether or not it reads the close frame."""
        self.stop_reading()
        if self.session is not None:
            self.session.too_slow()  # which also hangs up after close_timeout
        else:
            self.guard.metrics.closes.labels(str(int(CloseCode.TRY_AGAIN_LATER))).inc()
            self.transport.abort()

    def abort_later(self) -> None:
        self.loop.call_later(self.guard.config.close_timeout, self._abort_if_open)

    def _abort_if_open(self) -> None:
        if not self.connection_lost_waiter.done():
            self.transport.abort()
