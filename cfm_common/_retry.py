"""Retry policies: which frames go out again, when, and when a request gives up.

Pure, clock passed in. The decisions, in one place:

- **Refused for its rate** (``rate_limited`` naming one of our entries): the pacer
  learns the server's ``retry_ms`` and the entry is queued again in its place — except
  a ``nudge``, refused for the per-pair interval another session of the user spent: the
  caller hears of that. A refused read mark, typing or presence frame (named by its
  type: they carry no id) is re-sent, dropped (stale by then) or re-sent current.
- **Dropped unread** (``rate_limited`` without ``ref``: over the inbound byte budget):
  everything pauses for ``retry_ms``, then every unacked say, nudge and change goes
  again, and every request written on this connection that is safe to repeat (not
  ``contact``, which read twice would tell the other side twice).
- **Not stored** (``internal`` for a say, nudge or change: the messages of
  :data:`~cfm_common._outbox.MESSAGES`): they are held for 0.5, 1, 2, 4, 8 and 8 s, then
  every unacked one goes again in the order made (a later message is not stored before
  the refused one); after :data:`INTERNAL_RETRIES` the call fails.
- **Not stored, without an id** (``internal`` naming ``read`` or ``presence``): the
  read marks and presence the client holds go again after ``retry_ms``, as after a
  rate refusal; the program is not told (nothing of its waits for them).
- **A reconnect** sends the whole outbox again, in order, with the same ids
  (:meth:`cfm_common._core.ClientCore.connection_made`): the server stores each id once.
- **No answer in time**: :func:`answer_deadline` — the time a request waits, connected,
  for the client's own pacing does not count.

The reconnect schedule (how long to wait before the next connection) is
:mod:`cfm_common._reconnect`.
"""

from __future__ import annotations

import logging

from cfm_common import frames as f
from cfm_common._outbox import MESSAGES, Outbox, Outgoing
from cfm_common._sendqueue import SendQueue
from cfm_common.rules import RATE_KIND, ErrorCode

log = logging.getLogger(__name__)

# A say or nudge the server could not store is sent again with the same id, after 0.5,
# 1, 2, 4, 8 and 8 s, before its call fails.
INTERNAL_RETRIES = 6
INTERNAL_BACKOFF = (0.5, 8.0)
# The frames without an id whose ``internal`` refusal the SDK answers by sending its
# current state again (after ``retry_ms``): nothing waits on them to be told.
NOT_STORED_AGAIN = frozenset({"read", "presence"})


def internal_delay(refusals: int) -> float | None:
    """The wait before a say refused ``refusals`` times with ``internal`` goes again;
    None: give up."""
    if refusals >= INTERNAL_RETRIES:
        return None
    first, cap = INTERNAL_BACKOFF
    return min(first * 2**refusals, cap)


def answer_deadline(entry: Outgoing, now: float, *, connected: bool,
                    timeout: float) -> float | None:
    """A request reached its deadline unanswered: its new deadline, or None if it has
    timed out. Waiting in the queue for the rate budget is not the server being slow,
    nor is the time before a late write."""
    if entry.unsent and connected:
        return now + timeout
    if connected and entry.writes and entry.written_at + timeout > now:
        return entry.written_at + timeout
    return None


class Retries:
    """The retry timers of one connection, and what each refusal makes go again."""

    def __init__(self, outbox: Outbox, sendq: SendQueue) -> None:
        self.outbox = outbox
        self.sendq = sendq
        self.held = False  # says wait: the server could not store one
        self.release_at: float | None = None  # when held says go again
        self.resend_at: float | None = None  # when frames dropped unread go again

    def reset(self) -> None:
        """The connection ended: the next one sends the whole outbox, in order."""
        self.held = False
        self.release_at = self.resend_at = None

    def next_deadline(self) -> float | None:
        times = [t for t in (self.release_at, self.resend_at) if t is not None]
        return min(times) if times else None

    def refused(self, error: f.Error, entry: Outgoing | None, now: float,
                generation: int) -> bool:
        """An ``error`` for one of our frames (``entry``, if it names one): True if a
        retry takes care of it, so the caller neither fails the entry nor reports it."""
        if error.code == ErrorCode.RATE_LIMITED:
            if error.ref is None:
                self.sendq.pacer.pause(error.retry_ms, now)
                if self.resend_at is None:
                    self.resend_at = now + (error.retry_ms or 1000) / 1000
                return False  # the program hears of it too: something was lost
            if self._rate_limited(error.ref, entry, error.retry_ms, now):
                log.debug("%s refused for its rate; again in %s ms", error.ref, error.retry_ms)
                return True
        if error.code == ErrorCode.INTERNAL and entry is None \
                and error.ref in NOT_STORED_AGAIN:
            # A read mark or presence the server could not store (a cluster node without
            # Redis, a full disk): ours is kept, and sent again as after a rate refusal.
            log.info("%s not stored (%s); again in %s ms", error.ref, error.msg,
                     error.retry_ms)
            return self._rate_limited(error.ref, None, error.retry_ms, now)
        if error.code == ErrorCode.INTERNAL and entry is not None \
                and entry.kind in MESSAGES and not entry.reply.done():
            delay = internal_delay(entry.refusals)
            if delay is not None:
                # Not stored, so not lost either: its id keeps a later success single.
                entry.refusals += 1
                log.warning("%s not stored (%s); again in %.1f s", entry.key, error.msg, delay)
                self.held = True
                if self.release_at is None:
                    self.release_at = now + delay
                return True
        return False

    def _rate_limited(self, ref: str, entry: Outgoing | None, retry_ms: int | None,
                      now: float) -> bool:
        pacer = self.sendq.pacer
        if entry is not None:
            if entry.reply.done():
                return True
            if entry.kind == "nudge":
                return False  # the per-pair interval (another session nudged): caller decides
            pacer.penalize(RATE_KIND.get(entry.frame.T), retry_ms, now)
            self.sendq.add(entry)
            return True
        if ref == "read":
            self.sendq.read_refused(retry_ms, now)
            return True
        if ref == "typing":
            pacer.penalize("typing", retry_ms, now)
            return True  # stale by the time it could go: dropped
        if ref == "presence":
            pacer.penalize("presence", retry_ms, now)
            self.sendq.want_presence()
            return True
        return False

    def tick(self, now: float, generation: int) -> None:
        """Fire the timers that are due (only ever called while connected)."""
        if self.resend_at is not None and now >= self.resend_at:
            self.resend_at = None
            for entry in self.outbox.unanswered():
                if entry.kind in MESSAGES:
                    self.sendq.add(entry)  # held says wait in the queue until released
                elif entry.sent_on == generation and entry.kind != "contact":
                    self.sendq.add(entry)
        if self.release_at is not None and now >= self.release_at:
            self.release_at = None
            self.held = False
            for entry in self.outbox.unanswered():
                if entry.kind in MESSAGES:
                    self.sendq.add(entry)
