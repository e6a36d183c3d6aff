"""Keepalive pings for every connection of a server on one timer, not a task each.

websockets' keepalive is a task per connection (``Connection.keepalive``: sleep
``ping_interval``, ping, wait ``ping_timeout`` for the pong), about 0.9 KB of every idle
connection in its task, coroutine, sleep future and timer handle. Here one timer walks a
wheel of ``SLOTS`` sets of connections, one slot per tick (``ping_interval / SLOTS``), so
each connection is visited once per ``ping_interval``, ~``ping_interval`` after it
opened, and its visit:

- ends it (1011 "keepalive ping timeout", as websockets does) when its oldest ping has
  waited ``ping_timeout`` or more without a pong;
- else pings it when no ping of it is waiting.

Its slot is checked again ``ping_timeout`` after the ping too (when that is less than
``ping_interval``), so a peer that stopped answering is ended within ``ping_timeout``
(plus a tick) of the ping, as with websockets' own. The timer runs only while a
connection is registered. Pings are written at once, not after a drain: the server's
own frames do not wait for the reader either (the send bound ends a slow one).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from typing import Protocol

log = logging.getLogger(__name__)

SLOTS = 20


class Pinged(Protocol):
    """What the wheel asks of a connection (``MeteredConnection``)."""

    def keepalive_visit(self, now: float, timeout: float | None) -> None:
        """End the connection if a ping waited ``timeout``; else ping if none waits."""

    def keepalive_check(self, now: float, timeout: float | None) -> bool:
        """End the connection if a ping waited ``timeout``."""


class KeepaliveWheel:
    def __init__(self, interval: float, timeout: float | None) -> None:
        self.interval = interval
        self.timeout = timeout
        self.tick = interval / SLOTS
        self._slots: list[set[Pinged]] = [set() for _ in range(SLOTS)]
        self._cursor = 0
        self._count = 0
        self._handle: asyncio.TimerHandle | None = None
        # The slot pinged this many ticks ago is checked for timeouts again (None: the
        # next visit, one interval after the ping, comes first).
        ticks = math.ceil(timeout / self.tick) if timeout is not None else SLOTS
        self._check_back = ticks if ticks < SLOTS else None

    def add(self, connection: Pinged) -> None:
        # The slot visited last: the next visit is a whole interval away.
        self._slots[(self._cursor - 1) % SLOTS].add(connection)
        self._count += 1
        if self._handle is None:
            self._handle = asyncio.get_running_loop().call_later(self.tick, self._turn)

    def discard(self, connection: Pinged) -> None:
        for slot in self._slots:
            if connection in slot:
                slot.discard(connection)
                self._count -= 1
                break
        if not self._count and self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def __len__(self) -> int:
        return self._count

    def _turn(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        cursor = self._cursor
        self._cursor = (cursor + 1) % SLOTS
        timeout = self.timeout
        if self._check_back is not None and timeout is not None:
            for connection in list(self._slots[(cursor - self._check_back) % SLOTS]):
                self._visit(connection.keepalive_check, now, timeout)
        for connection in list(self._slots[cursor]):
            self._visit(connection.keepalive_visit, now, timeout)
        self._handle = loop.call_later(self.tick, self._turn) if self._count else None

    @staticmethod
    def _visit(visit: Callable[[float, float | None], object], now: float,
               timeout: float | None) -> None:
        try:
            visit(now, timeout)
        except Exception:  # one connection's failure must not stop everyone's pings
            log.exception("keepalive: visiting a connection failed")
