"""What one connection has still to write, and which frame the server's limits let out
next. No I/O: the client's writer task asks :meth:`SendQueue.next_frame` and writes what
it gets, or sleeps for the time it is told.

Two lanes:

- the **outbox lane**: says, nudges and requests (:class:`~cfm_common._outbox.Outgoing`
  entries) in the order they were made. An entry whose bucket is empty holds back the
  later entries of the same bucket (their order is kept) but not those of other buckets
  — except that a ``join`` or ``leave`` neither overtakes nor is overtaken, because a later say or
  history request may depend on the membership it changes.
- the **side lane**: what the client sends in answer to incoming traffic — read marks
  (one per room: the newest), a presence change (the current one), typing indicators.
  It goes first when its budget allows (a read mark made before a ``leave`` must not
  land after it), never waits behind the outbox lane, and coalesces, so a reader that
  marks every message read sends at most what the read budget allows.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable

from cfm_common import frames as f
from cfm_common._outbox import MESSAGES, Outgoing
from cfm_common._pacing import Pacer
from cfm_common.rules import RATE_KIND

# The writer looks this far down the outbox lane for a frame whose budget allows it now.
SCAN_LIMIT = 256
# Requests that must not be overtaken, nor overtake anything (membership changes).
BARRIERS = frozenset({"join", "leave"})
# A read refusal does not name its room: marks sent this recently go again.
READ_RESEND_WINDOW = 2.0
# A read mark waits this long for later marks of its room, and goes out as one with the
# newest: a program that marks every message of a busy room read sends a few frames a
# second, not one per message — unless something else waits to go out: a mark is never
# overtaken by a frame made after it.
READ_LINGER = 0.25


class SendQueue:
    """The frames one connection has still to write, paced by :attr:`pacer`."""

    def __init__(self, encode: Callable[[f.ClientFrame], bytes]) -> None:
        self.encode = encode
        self.pacer = Pacer(None, 0.0)
        self.entries: list[Outgoing] = []  # by slot
        self.marks: dict[str, float] = {}  # rooms whose read mark is to be sent → since
        self.marks_sent_at: dict[str, float] = {}
        self.presence = False  # the current presence is to be sent
        self.typing: list[f.SendTyping] = []  # their tokens are taken already
        # Counts what was ever queued: a writer that saw it unchanged has nothing new.
        self.queued = 0

    def reset(self, pacer: Pacer) -> None:
        """A new connection: nothing queued, the limits of its ``welcome``."""
        for entry in self.entries:
            entry.unsent = False
        self.entries.clear()
        self.marks.clear()
        self.marks_sent_at.clear()
        self.presence = False
        self.typing.clear()
        pacer.carry_nudges(self.pacer)
        self.pacer = pacer

    # --- queueing ----------------------------------------------------------------------

    def add(self, entry: Outgoing) -> bool:
        """Queue ``entry`` in its place in the send order (a re-sent entry goes before
        everything made after it); False if it is queued already or answered."""
        if entry.unsent or entry.reply.done():
            return False
        entry.unsent = True
        self.queued += 1
        if not self.entries or self.entries[-1].slot < entry.slot:
            self.entries.append(entry)  # the usual case: the newest goes last
        else:
            bisect.insort(self.entries, entry, key=lambda e: e.slot)
        return True

    def add_typing(self, frame: f.SendTyping, now: float) -> bool:
        """Queue a typing indicator if its budget allows it now; dropped otherwise (it
        would be stale by the time it could go)."""
        if self.pacer.wait("typing", now) > 0:
            return False
        self.pacer.take("typing", now)
        self.typing.append(frame)
        self.queued += 1
        return True

    def want_presence(self) -> None:
        """The current presence is to be sent (coalesced: what is current when it goes)."""
        self.presence = True
        self.queued += 1

    def side_busy(self) -> bool:
        return bool(self.marks or self.presence or self.typing)

    def backlog(self) -> int:
        waiting = sum(1 for entry in self.entries if not entry.reply.done())
        return waiting + len(self.marks) + int(self.presence) + len(self.typing)

    # --- the next frame ----------------------------------------------------------------

    def next_frame(
        self, now: float, *, held: bool, generation: int, read_marks: dict[str, int],
        presence: Callable[[], f.SetPresence],
    ) -> tuple[bytes | None, float | None]:
        """The next frame to write now, encoded, or None and the seconds until one may
        go (None: nothing waits). ``held``: says and nudges wait (one could not be
        stored). Every frame also spends the inbound byte budget; one that does not fit
        holds everything back (the budget is one for all kinds)."""
        pacer = self.pacer
        if self.typing:
            data = self.encode(self.typing[0])
            wait = pacer.wait_bytes(len(data), now)
            if wait > 0:
                return None, wait
            self.typing.pop(0)
            return self._spend(data, now), None
        soonest: float | None = None
        if self.presence:
            wait = pacer.wait("presence", now)
            if wait == 0:
                data = self.encode(presence())
                wait = pacer.wait_bytes(len(data), now)
                if wait > 0:
                    return None, wait  # the byte budget holds everything back
                pacer.take("presence", now)
                self.presence = False
                return self._spend(data, now), None
            soonest = wait
        if self.marks:
            room, since = next(iter(self.marks.items()))
            wait = max(pacer.wait("history", now), self._linger(since, now))
            if wait == 0:
                data = self.encode(f.MarkRead(room=room, seq=read_marks[room]))
                wait = pacer.wait_bytes(len(data), now)
                if wait > 0:
                    return None, wait
                pacer.take("history", now)
                del self.marks[room]
                self.marks_sent_at[room] = now
                return self._spend(data, now), None
            soonest = wait if soonest is None else min(soonest, wait)
        data, entry_wait = self._next_entry(now, held, generation)
        if data is not None:
            return data, None
        if entry_wait is not None and entry_wait < 0:  # the byte budget: nothing else
            return None, -entry_wait
        if entry_wait is not None:
            soonest = entry_wait if soonest is None else min(soonest, entry_wait)
        return None, soonest

    def mark(self, room: str, now: float) -> None:
        """``room``'s read mark is to be sent (the newest when it goes)."""
        self.marks.setdefault(room, now)
        self.queued += 1

    def _linger(self, since: float, now: float) -> float:
        left = since + READ_LINGER - now
        if left <= 0 or self.entries:
            return 0.0  # something else is to go: the mark goes first (a leave, say)
        return left

    def _spend(self, data: bytes, now: float) -> bytes:
        self.pacer.take_bytes(len(data), now)
        return data

    def _next_entry(self, now: float, held: bool, generation: int
                    ) -> tuple[bytes | None, float | None]:
        """The next outbox entry, encoded; or None and the wait — negative when it is the
        byte budget that holds everything back."""
        pacer = self.pacer
        soonest: float | None = None
        blocked: set[str] = set()
        entries = self.entries
        i = scanned = 0
        while i < len(entries) and scanned < SCAN_LIMIT:
            entry = entries[i]
            if entry.reply.done():  # answered, cancelled or failed meanwhile
                entry.unsent = False
                del entries[i]
                continue
            scanned += 1
            barrier = entry.kind in BARRIERS
            if barrier and blocked:
                break
            if held and entry.kind in MESSAGES:
                i += 1  # they wait until the one the server could not store goes again
                continue
            kind = RATE_KIND.get(entry.frame.T, "")
            if kind in blocked:
                i += 1
                continue
            text = stored_text(entry.frame)
            wait = max(pacer.wait(kind, now), pacer.wait_text(text, now))
            if wait > 0:
                soonest = wait if soonest is None else min(soonest, wait)
                blocked.add(kind)
                if barrier:
                    break
                i += 1
                continue
            data = self.encode(entry.frame)
            wait = pacer.wait_bytes(len(data), now)
            if wait > 0:
                return None, -wait
            pacer.take(kind, now)
            pacer.take_text(text, now)
            del entries[i]
            entry.unsent = False
            entry.sent_on = generation
            entry.writes += 1
            entry.written_at = now
            return self._spend(data, now), None
        return None, soonest

    # --- refusals ----------------------------------------------------------------------

    def read_refused(self, retry_ms: int | None, now: float) -> None:
        """A read mark was refused for its rate; the refusal does not say which: send the
        recent ones again once the budget allows."""
        self.pacer.penalize("history", retry_ms, now)
        recent = READ_RESEND_WINDOW + (retry_ms or 1000) / 1000
        for room, at in self.marks_sent_at.items():
            if now - at < recent:
                self.marks.setdefault(room, now - READ_LINGER)
                self.queued += 1


# The frames whose text the server stores, and the field holding it: what the user's text
# budget (welcome.limits.user_rates.text) counts.
STORED_TEXT = {"say": "text", "edit": "text", "react": "emoji"}


def stored_text(frame: f.ClientFrame) -> str | None:
    field = STORED_TEXT.get(frame.T)
    text = getattr(frame, field, None) if field is not None else None
    return text if isinstance(text, str) else None
