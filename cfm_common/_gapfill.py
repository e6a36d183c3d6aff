"""Gap filling: fetching with ``history{after}`` what a room lacks, until nothing does.

Pure, clock passed in. :class:`cfm_common._resume.Resume` says *that* a room lacks
messages (after a ``welcome``, a ``joined`` with ``more``, or a live message past a
hole); this module decides *how* it is caught up:

- one fill per room at a time; asked again while one runs, it goes round once more;
- a hole seen live right behind one of our own unacked says is usually that say: the
  fill first waits up to :data:`OWN_ACK_GRACE` for their acks, then looks again;
- pages of :data:`HISTORY_PAGE` messages, each after the last one handed over, until
  a page says there is no more;
- a page that went past a hole without filling it means the store lacks those
  messages: the hole is skipped (:meth:`Resume.skip_gap`) rather than stall the room;
- a request that times out is asked again :data:`RETRY_AFTER` seconds later (messages
  wait behind the hole: not catching up is not an option; a refusal for its rate is
  re-sent by :mod:`cfm_common._retry`); any other refusal ends the fill, with a warning.

The requests go through the outbox like any other (:meth:`ClientCore.request
<cfm_common._core.ClientCore.request>`), so they are paced, matched by request id and
withdrawn when the connection drops (a new ``welcome`` starts the fills again).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from cfm_common import frames as f
from cfm_common import rules
from cfm_common._outbox import Outgoing, Reply
from cfm_common._resume import Resume

log = logging.getLogger(__name__)

HISTORY_PAGE = rules.MAX_HISTORY_LIMIT
# A gap right behind our own unacked say is usually that say: give its ack a moment.
OWN_ACK_GRACE = 2.0
# A page request that timed out is asked again after this long.
RETRY_AFTER = 1.0


@dataclass
class Fill:
    """Where the catching up of one room stands."""

    room: str
    grace: list[Outgoing] = field(default_factory=list)  # own says whose acks it awaits
    wait_until: float | None = None  # no request before (grace, or a retry)
    request: Outgoing | None = None  # the page asked for
    deadline: float | None = None  # when the page request times out (set at a tick)
    again: bool = False  # asked to fill again while running


class GapFill:
    """The rooms being caught up. ``request`` queues a history request and returns its
    entry, ``withdraw`` takes one back; ``deliver`` hands messages on; ``own_unacked``
    lists our says to a room."""

    def __init__(self, resume: Resume, request: Callable[[f.GetHistory], Outgoing],
                 withdraw: Callable[[Outgoing], None], deliver: Callable[[list[f.Msg]], None],
                 own_unacked: Callable[[str], list[Outgoing]]) -> None:
        self.resume = resume
        self._request = request
        self._withdraw = withdraw
        self._deliver = deliver
        self._own_unacked = own_unacked
        self.rooms: dict[str, Fill] = {}
        self.timeout = 10.0  # a page request's; the client sets its request_timeout

    def start(self, room: str, now: float, *, live: bool = False) -> None:
        """``room`` lacks messages (``live``: a hole seen in live traffic)."""
        fill = self.rooms.get(room)
        if fill is not None:
            fill.again = True
            return
        fill = self.rooms[room] = Fill(room)
        if live:
            fill.grace = [e for e in self._own_unacked(room) if not e.reply.done()]
            if fill.grace:
                fill.wait_until = now + OWN_ACK_GRACE
                return
        self._ask(fill)

    def start_at(self, room: str, at: float) -> None:
        """``room`` lacks what the server broke a replay off before (a ``join``'s replay
        answered, after its ``joined``, by ``rate_limited`` or ``internal`` with
        ``retry_ms``): caught up with ``history{after}`` from ``at`` on."""
        fill = self.rooms.get(room)
        if fill is not None:
            fill.again = True
            return
        self.rooms[room] = Fill(room, wait_until=at)

    def cancel(self) -> None:
        """The connection ended: every fill stops, its request withdrawn."""
        fills, self.rooms = list(self.rooms.values()), {}
        for fill in fills:
            if fill.request is not None:
                self._withdraw(fill.request)

    def next_deadline(self) -> float | None:
        """When :meth:`tick` has something to do; a fill in its grace wakes earlier, at
        the ack that ends it (the caller ticks after every frame)."""
        times = [(fill.deadline if fill.deadline is not None else -1.0)
                 if fill.request is not None else fill.wait_until
                 for fill in self.rooms.values()]
        return min((t for t in times if t is not None), default=None)

    def tick(self, now: float, expired: Callable[[Outgoing, float], float | None]) -> None:
        """Move every fill on; ``expired`` gives a page request that reached its deadline
        a new one, or None when it timed out."""
        for fill in list(self.rooms.values()):
            if fill.request is not None:
                if fill.deadline is None:
                    fill.deadline = now + self.timeout
                elif now >= fill.deadline:
                    later = expired(fill.request, now)
                    if later is not None:
                        fill.deadline = later
                        continue
                    log.info("catching up on %s: no answer in time; trying again", fill.room)
                    entry, fill.request = fill.request, None
                    fill.wait_until = now + RETRY_AFTER
                    self._withdraw(entry)
                continue
            if fill.wait_until is None:
                continue
            if fill.grace:
                if now < fill.wait_until and not all(e.reply.done() for e in fill.grace):
                    continue
                fill.grace, fill.wait_until = [], None
                if not self.resume.has_gap(fill.room):
                    del self.rooms[fill.room]
                    continue
            elif now < fill.wait_until:
                continue
            fill.wait_until = None
            self._ask(fill)
            fill.deadline = now + self.timeout

    def _ask(self, fill: Fill) -> None:
        """Ask for the page after the last message handed over."""
        fill.again = False
        frame = f.GetHistory(room=fill.room, after=self.resume.delivered(fill.room),
                             limit=HISTORY_PAGE)
        entry = fill.request = self._request(frame)
        fill.deadline = None
        entry.reply.on_settled = lambda reply: self._answered(fill, entry, reply)

    def _answered(self, fill: Fill, entry: Outgoing, reply: Reply) -> None:
        if fill.request is not entry or reply.withdrawn:
            return
        fill.request = None
        room = fill.room
        if reply.error is not None:
            log.warning("cannot catch up on %s: %s", room, reply.error)
            del self.rooms[room]
            return
        page = reply.value
        assert isinstance(page, f.History)
        msgs = [f.Msg.from_stored(m) for m in page.msgs]
        for msg in msgs:
            self._deliver(self.resume.offer(msg))
        if msgs and self.resume.has_gap(room) and msgs[-1].seq > self.resume.delivered(room):
            # The page went past a hole it did not fill: the store lacks those.
            self._deliver(self.resume.skip_gap(room))
        if (page.more and msgs) or fill.again:
            self._ask(fill)
            return
        del self.rooms[room]
