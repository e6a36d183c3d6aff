"""File descriptors: every connection holds one, and the soft limit is often 1,024.

``cfm serve`` raises the soft limit to the hard one at start (as ``cfm bench`` does) and
warns when what is left still holds few connections; docs/server.md says how to raise
the hard limit (``ulimit -n``, systemd's ``LimitNOFILE=``).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import resource
import time
from typing import Any

log = logging.getLogger(__name__)

# Descriptors the server uses besides its connections: the database, its WAL, -shm and
# lock, the checkpoint thread's connection, listening sockets, the event loop's own,
# the log file, and two per built-in AI contact (its client end and the server's).
RESERVED = 64
# Fewer connections than this, and a modest company's clients (each TUI and bot holds
# one connection, a few with several devices) could be refused for want of descriptors.
LOW_CONNECTIONS = 1000
# Linux refuses a soft limit above fs.nr_open, whatever the hard limit says.
_UNLIMITED_TARGET = 1 << 20


def raise_soft_limit() -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE to the hard limit; (soft before, soft after)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = _UNLIMITED_TARGET if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:
            log.debug("cannot raise the descriptor limit from %d to %d: %s", soft, target, exc)
            return soft, soft
        return soft, target
    return soft, soft


def connection_capacity(soft_limit: int) -> int:
    """About how many connections ``soft_limit`` descriptors hold."""
    return max(0, soft_limit - RESERVED)


def check_descriptors() -> int:
    """Raise the soft limit and warn if it is still low; the soft limit in force."""
    before, after = raise_soft_limit()
    if after != before:
        log.debug("descriptor limit raised from %d to %d", before, after)
    capacity = connection_capacity(after)
    if capacity < LOW_CONNECTIONS:
        log.warning("only %d file descriptors are allowed (ulimit -n), room for about %d "
                    "connections; raise the hard limit (ulimit -Hn, or LimitNOFILE= in the "
                    "systemd unit), see docs/server.md", after, capacity)
    return after


# accept() failures that mean "out of descriptors or memory": asyncio logs each with a
# traceback and retries a second later, thousands of lines a minute while it lasts.
_EXHAUSTED = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
EXHAUSTED_LOG_INTERVAL_S = 10.0


class ExhaustionLog:
    """An event-loop exception handler that turns the flood of "socket.accept() out of
    system resource" tracebacks into one line per ``interval`` with a count; every
    other error goes to the loop's default handler."""

    def __init__(self, interval: float = EXHAUSTED_LOG_INTERVAL_S) -> None:
        self.interval = interval
        self.suppressed = 0
        self._last = -float("inf")

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if _late_accept_retry(exc, context.get("handle")):
            # After an accept failure asyncio retries a second later (a timer it does not
            # cancel); when the server closed its socket meanwhile (shutting down), the
            # retry finds descriptor -1 and raises. Nothing is lost: the server is gone.
            log.debug("an accept retry after the listening socket closed: %s", exc)
            return
        if not (isinstance(exc, OSError) and exc.errno in _EXHAUSTED):
            loop.default_exception_handler(context)
            return
        now = time.monotonic()
        if now - self._last < self.interval:
            self.suppressed += 1
            return
        self._last, more, self.suppressed = now, self.suppressed, 0
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        log.error("cannot accept connections: %s (the limit is %d descriptors)%s; new "
                  "clients wait until some close; raise the limit, see docs/server.md",
                  exc.strerror or exc, soft,
                  f"; {more} more such failures since the last line" if more else "")


def _late_accept_retry(exc: BaseException | None, handle: object) -> bool:
    callback = getattr(handle, "_callback", None)
    return isinstance(exc, ValueError) and getattr(callback, "__name__", "") == "_start_serving"


def quiet_exhaustion(loop: asyncio.AbstractEventLoop) -> None:
    """Install :class:`ExhaustionLog` on ``loop`` (``cfm serve`` does at start)."""
    loop.set_exception_handler(ExhaustionLog())
