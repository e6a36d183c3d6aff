"""Whether a node reaches Redis, told to the operator once per outage.

When Redis goes away every part of a node notices on its own: the batcher's pipeline
fails, the pub/sub watchdog's ping goes unanswered and the subscriber retries its
connection, the presence heartbeat, each lease's renewal, the retention pass… Each
logging its own warning made a 24 s outage 30 to 40 lines per node, which buries what
the operator needs: when it started, that it still lasts, and when it ended.

So the parts that hold a connection to Redis (the batcher, each pub/sub connection)
report to the node's one :class:`Outage`: ``down(part, reason)`` when theirs failed and
``up(part)`` when Redis answered it again. The outage starts with the first part down
and ends when every part is back; it logs one line at the start (what failed, since
when), a reminder at most every ``remind`` seconds while it lasts (how long so far) and
one line when it is over (how long it lasted). Every other part that fails a request
because of it logs at DEBUG only: ``level(exc)`` says at which level to log a failure
(``ClusterUnavailable.unreachable`` marks one of an outage's).

A refusal (``LOADING``, ``OOM``, ``MISCONF`` …: Redis answered) is not an outage: it is
logged where it happens, as before.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time

from cfm_server.cluster.errors import ClusterUnavailable

log = logging.getLogger(__name__)

REMIND_S = 30.0  # a reminder at most this often while an outage lasts


def level(exc: BaseException | None, usual: int = logging.WARNING) -> int:
    """The level to log ``exc`` at: DEBUG if it is Redis being out of reach (the node's
    :class:`Outage` says so, once), else ``usual``."""
    if isinstance(exc, ClusterUnavailable) and exc.unreachable:
        return logging.DEBUG
    return usual


def _clock_text(wall: float) -> str:
    """As the log's own timestamps (logsetup.py): with its UTC offset."""
    return datetime.datetime.fromtimestamp(wall).astimezone().isoformat(timespec="seconds")


class Outage:
    """One node's view of Redis: reachable, or out of reach since when and why."""

    def __init__(self, node: str = "", *, remind: float = REMIND_S) -> None:
        self._who = f" from node {node}" if node else ""  # in the lines
        self.remind = remind
        self._down: dict[str, str] = {}  # part → what made it fail
        self._since = 0.0  # monotonic start of the outage under way
        self._since_wall = 0.0
        self._reminder: asyncio.TimerHandle | None = None
        self.outages = 0  # outages so far (tests, /metrics)
        self.refused = 0  # calls to Redis failed by the outage under way (the batcher's)

    @property
    def reachable(self) -> bool:
        return not self._down

    def down(self, part: str, reason: object) -> None:
        """``part`` (``commands``, ``pub/sub``) lost Redis: the first part starts the
        outage (one line); the others only join it."""
        text = str(reason) or type(reason).__name__
        if self._down:
            self._down[part] = text
            return
        self._down[part] = text
        self.outages += 1
        self.refused = 0
        self._since, self._since_wall = time.monotonic(), time.time()
        log.warning("Redis unreachable%s since %s (%s: %s); requests that need it are "
                    "answered retry_ms, and the node reconnects by itself",
                    self._who, _clock_text(self._since_wall), part, text)
        self._schedule()

    def up(self, part: str) -> None:
        """Redis answered ``part`` again: the outage ends when no part is left down."""
        if self._down.pop(part, None) is None or self._down:
            return
        if self._reminder is not None:
            self._reminder.cancel()
            self._reminder = None
        log.warning("Redis reachable again%s after %s (down since %s; %d calls to Redis "
                    "failed meanwhile, answered retry_ms)", self._who,
                    _duration(time.monotonic() - self._since), _clock_text(self._since_wall),
                    self.refused)

    def _schedule(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a test of the class alone): no reminders
            return
        self._reminder = loop.call_later(self.remind, self._remind)

    def _remind(self) -> None:
        self._reminder = None
        if not self._down:
            return
        parts = ", ".join(f"{part}: {reason}" for part, reason in self._down.items())
        log.warning("Redis still unreachable%s: for %s (since %s; %s)",
                    self._who, _duration(time.monotonic() - self._since),
                    _clock_text(self._since_wall), parts)
        self._schedule()

    def close(self) -> None:
        if self._reminder is not None:
            self._reminder.cancel()
            self._reminder = None


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {rest} s"
    return f"{minutes // 60} h {minutes % 60} min"
