"""Log lines that an outsider can trigger, rate-limited.

A client can make the server log: a failed accept when descriptors run out (asyncio logs
a traceback for each), a write to a socket that broke under a flood ("socket.send()
raised exception.", once per write), a slow reader closed, an abuser closed. Thousands a
second would fill the disk and bury everything else, so :class:`RateLimitFilter` lets
``burst`` lines of each kind through per ``interval`` seconds — a kind is the logger and
the first line of the message template — drops the rest, and says on the next line of
that kind how many it dropped. Lines it passes keep no traceback after the first of each
interval: one is enough to see what went wrong.

``install()`` puts one filter on the loggers whose lines outsiders trigger.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

# The loggers whose lines a client can trigger at will.
OUTSIDER_LOGGERS = (
    "asyncio",  # accept failures (EMFILE), writes to broken sockets
    "websockets",
    "cfm_server.websockets",  # websockets' own logger as the server passes it
    "cfm_server.session",
    "cfm_server.wsconn",
)


class _Kind:
    __slots__ = ("dropped", "passed", "start")

    def __init__(self, start: float) -> None:
        self.start = start
        self.passed = 0
        self.dropped = 0


class RateLimitFilter(logging.Filter):
    """At most ``burst`` records of one kind per ``interval`` seconds."""

    def __init__(self, burst: int = 5, interval: float = 60.0,
                 clock: Callable[[], float] = time.monotonic, max_kinds: int = 1000) -> None:
        super().__init__()
        self.burst = burst
        self.interval = interval
        self.clock = clock
        self.max_kinds = max_kinds
        self.kinds: dict[tuple[str, str], _Kind] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        now = self.clock()
        template = record.msg if isinstance(record.msg, str) else type(record.msg).__name__
        key = (record.name, template.split("\n", 1)[0][:200])
        kind = self.kinds.get(key)
        if kind is None:
            if len(self.kinds) >= self.max_kinds:
                self._forget(now)
            kind = self.kinds[key] = _Kind(now)
        elif now - kind.start >= self.interval:
            dropped = kind.dropped
            kind.start, kind.passed, kind.dropped = now, 0, 0
            if dropped:
                record.msg = f"{template} ({dropped} more like this in the last interval " \
                             f"were not logged)"
        if kind.passed >= self.burst:
            kind.dropped += 1
            return False
        if kind.passed and record.exc_info:
            record.exc_info = None  # one traceback per kind and interval is enough
            record.exc_text = None
        kind.passed += 1
        return True

    def _forget(self, now: float) -> None:
        """Drop kinds whose interval is over (they have no lines waiting to be counted)."""
        self.kinds = {k: v for k, v in self.kinds.items()
                      if now - v.start < self.interval or v.dropped}
        if len(self.kinds) >= self.max_kinds:
            self.kinds.clear()


def install(burst: int = 5, interval: float = 60.0,
            names: Iterable[str] = OUTSIDER_LOGGERS) -> Callable[[], None]:
    """Rate-limit the loggers ``names``; returns the function that takes it off again."""
    rate_filter = RateLimitFilter(burst, interval)
    loggers = [logging.getLogger(name) for name in names]
    for logger in loggers:
        logger.addFilter(rate_filter)

    def uninstall() -> None:
        for logger in loggers:
            logger.removeFilter(rate_filter)

    return uninstall
