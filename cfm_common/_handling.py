"""Bookkeeping of handled messages for :class:`~cfm_common.bot.Bot`: pure, no I/O.

- :class:`Progress` tells how far each room is *handled*: a message counts once its
  handlers finished and their sends were acknowledged. With several handlers at once
  they finish out of order; the mark is the low-water one (every message up to it is
  done), so a bot killed at any moment resumes at the first message not yet done —
  at-least-once, never at-most-once.
- :func:`reply_id` derives a send's id from the message being answered, so a handler
  that runs again (after a kill) makes the same ids, and the server, which stores each
  (sender, id) once, lets its replies land once.
- :data:`CURRENT` is how a handler's sends are found without the handler's help: the
  client adds each send's future to the list in the current context (tasks a handler
  starts inherit it).
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
from dataclasses import dataclass, field
from typing import Any

from cfm_common.errors import ConnectionClosed
from cfm_common.frames import Msg


@dataclass
class Handling:
    """One message being handled: the sends it made, and how many ids it drew."""

    msg: Msg | None
    sends: list[asyncio.Future[Any]] = field(default_factory=list)
    drawn: int = 0

    def next_id(self, what: str, key: str | None) -> str | None:
        """The id of this handler's next send of ``what`` (a reply, a say to a room…):
        from its key if given, else from its place among the handler's sends."""
        if self.msg is None:
            return None if key is None else key_id(what, key)
        if key is None:
            self.drawn += 1
            return reply_id(self.msg, what, f"#{self.drawn}")
        return reply_id(self.msg, what, key)


# The handling the current task works for (None outside handlers).
CURRENT: contextvars.ContextVar[Handling | None] = contextvars.ContextVar(
    "cfm_handling", default=None)


def watch_send(future: asyncio.Future[Any]) -> None:
    """Called by the client for each say, nudge or change: the handler it is made for
    waits for it."""
    handling = CURRENT.get()
    if handling is not None:
        handling.sends.append(future)


async def sends_landed(handling: Handling) -> bool:
    """Wait for the acks of everything the handler sent (tasks it started included);
    False if the client closed first: the message is not done, a restart handles it
    again. A send refused for good (``forbidden``…) counts as done: handling it
    again would fail the same way."""
    waited = 0
    while waited < len(handling.sends):
        batch = handling.sends[waited:]
        waited = len(handling.sends)
        for result in await asyncio.gather(*batch, return_exceptions=True):
            if isinstance(result, ConnectionClosed | asyncio.CancelledError):
                return False
    return True


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:40]


def reply_id(msg: Msg, what: str = "reply", key: str = "") -> str:
    """A client id that depends only on the message answered, what is sent and ``key``.

    The answered message is named by its room, seq, sender and the sender's id: the
    same message after a restart (seq alone could repeat after a history reset, the
    sender's id does not). 42 characters, under the protocol's 64.
    """
    return "r-" + _digest(msg.room, str(msg.seq), msg.sender, msg.id or "", what, key)


def key_id(what: str, key: str) -> str:
    """A client id from a key alone (a scheduled post: ``key="daily-2026-12-04"``)."""
    return "k-" + _digest(what, key)


class Progress:
    """Per room, the messages handed to handlers and not yet done; the low-water mark."""

    def __init__(self) -> None:
        self._open: dict[str, set[int]] = {}
        self._highest: dict[str, int] = {}  # the highest seq started
        self.marks: dict[str, int] = {}  # the last mark returned

    def start(self, room: str, seq: int) -> None:
        if seq <= self._highest.get(room, 0):
            # Seqs only grow within a room's history: it was reset (a new epoch).
            self._open.pop(room, None)
            self.marks.pop(room, None)
        self._highest[room] = seq
        self._open.setdefault(room, set()).add(seq)

    def finish(self, room: str, seq: int) -> int | None:
        """``seq`` is done; the room's new mark if it moved (every seq up to it is done)."""
        open_ = self._open.get(room)
        if open_ is None or seq not in open_:
            return None
        open_.discard(seq)
        mark = min(open_) - 1 if open_ else self._highest[room]
        if mark <= self.marks.get(room, 0):
            return None
        self.marks[room] = mark
        return mark

    def busy(self, room: str) -> bool:
        return bool(self._open.get(room))
