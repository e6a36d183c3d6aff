"""The sessions with frames queued this loop turn, written once each at the turn's end.

Why one write per session per turn: one ``send()`` system call per recipient per message
was most of the server's CPU at high fan-out (docs/performance.md); a session's frames
of one turn (a group commit's acks and fan-outs) go out in a single ``transport.write``.
"""

from __future__ import annotations

import asyncio
from typing import Protocol


class Queued(Protocol):
    """A session, as the outbox sees it: something with frames to write."""

    def write_queued(self) -> None: ...


class Outbox:
    """The sessions with frames queued this loop turn: one write each per turn."""

    __slots__ = ("_dirty", "_scheduled")

    def __init__(self) -> None:
        self._dirty: list[Queued] = []
        self._scheduled = False

    def mark(self, session: Queued) -> None:
        self._dirty.append(session)
        self.flush_soon()

    def flush_soon(self) -> None:
        """Have the next loop turn end with a flush (after the callbacks already due).

        ``mark`` calls it: the flush runs after the callbacks already due this turn
        (every commit callback of a group commit), so they all share it. The SQLite
        store calls it right after a COMMIT completed its futures, whose callbacks (the
        acks and fan-outs) are then due next turn: the flush lands behind them in that
        same turn instead of one turn later, after another round of socket reads.
        """
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        self._scheduled = False
        dirty, self._dirty = self._dirty, []
        for session in dirty:
            session.write_queued()
