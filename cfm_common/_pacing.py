"""Client-side pacing: send no faster than the server's advertised limits allow.

Pure data, no I/O, clock passed in (like the server's ``cfm_server.limits``). The
client builds a :class:`Pacer` from every ``welcome.limits`` and asks it, before each
frame it writes, how long that frame's kind must still wait. The server refuses a
frame over its token bucket with ``rate_limited`` and counts the refusal toward a 4008
close; a client that keeps a copy of each bucket never gets there.

The copy is deliberately a little stricter than the server's bucket. The server spends
a token when it *reads* a frame, not when the client wrote it; frames that sat in a
socket buffer (a busy server, a slow link) arrive closer together than they left, and
``reserve`` tokens of headroom absorb that bunching. When the server refuses a frame
anyway, :meth:`Pacer.penalize` empties the copy until the server's ``retry_ms`` has
passed, so the copy never stays optimistic.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cfm_common.rules import USER_RATE_COVERS

# Slack added to the server's ``nudge_interval_ms`` for the same reason as ``reserve``.
NUDGE_SLACK = 0.1
# The server's inbound byte budget (``welcome.limits.recv``): each frame costs its size
# plus this. A server that limits rates but does not advertise the budget gets cfm's
# defaults assumed.
FRAME_COST = 256
DEFAULT_RECV = {"per_s": 65536.0, "burst": 262144}


class Bucket:
    """``rate`` tokens per second up to ``capacity``; starts full."""

    __slots__ = ("capacity", "rate", "stamp", "tokens")

    def __init__(self, rate: float, capacity: float, now: float) -> None:
        self.rate = rate
        self.capacity = capacity
        self.tokens = capacity
        self.stamp = now

    def _refill(self, now: float) -> None:
        if now > self.stamp:
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now

    def wait(self, now: float, cost: float = 1.0) -> float:
        """Seconds until ``cost`` tokens are there (0: now). A cost above the capacity
        needs a full bucket (and then takes it below zero): it must go some time."""
        self._refill(now)
        need = min(cost, self.capacity)
        if self.tokens >= need:
            return 0.0
        return (need - self.tokens) / self.rate

    def take(self, now: float, cost: float = 1.0) -> None:
        self._refill(now)
        self.tokens -= cost

    def empty_for(self, seconds: float, now: float) -> None:
        """No token before ``seconds`` from now (the server said so)."""
        self._refill(now)
        self.tokens = min(self.tokens, 1.0 - self.rate * seconds)


def reserve_of(burst: int) -> int:
    """The headroom kept below the server's ``burst``: a tenth, at least one token, but
    never the whole bucket."""
    return min(max(1, burst // 10), max(0, burst - 1))


class Pacer:
    """A copy of the server's per-session buckets, from ``welcome.limits``.

    Without ``rates`` (a server with rate limits off) nothing waits. Unknown kinds never
    wait either: the server only limits what it advertises.
    """

    def __init__(self, limits: Mapping[str, Any] | None, now: float) -> None:
        self.buckets: dict[str, Bucket] = {}
        self.paused_until = now
        rates = (limits or {}).get("rates")
        if isinstance(rates, Mapping):
            for kind, spec in rates.items():
                try:
                    rate = float(spec["per_s"])
                    burst = int(spec["burst"])
                except (KeyError, TypeError, ValueError):
                    continue  # a shape we do not know: leave that kind unpaced
                if rate > 0 and burst >= 1:
                    self.buckets[str(kind)] = Bucket(rate, burst - reserve_of(burst), now)
        self._tighten_by_user_rates((limits or {}).get("user_rates"), now)
        # The bytes of text a user's says and changes store (user_rates.text): paced by
        # each frame's text, not by frames.
        self.text = _bucket_of(((limits or {}).get("user_rates") or {}).get("text"), now)
        self.inbound: Bucket | None = None
        recv = (limits or {}).get("recv", DEFAULT_RECV if self.buckets else None)
        if isinstance(recv, Mapping):
            try:
                rate, burst = float(recv["per_s"]), int(recv["burst"])
            except (KeyError, TypeError, ValueError):
                rate, burst = 0.0, 0
            if rate > 0 and burst >= 1:
                self.inbound = Bucket(rate, burst - burst // 10, now)
        interval_ms = (limits or {}).get("nudge_interval_ms")
        self.nudge_interval = (
            interval_ms / 1000 + NUDGE_SLACK
            if isinstance(interval_ms, int | float) and interval_ms > 0 else 0.0
        )
        self._last_nudge: dict[str, float] = {}

    def _tighten_by_user_rates(self, user_rates: Any, now: float) -> None:
        """A per-user bucket (welcome.limits.user_rates) tighter than the session's
        bucket of a kind it covers paces that kind: one session of a user that spends
        past it is refused however slow its own bucket says it is (rules.USER_RATE_COVERS).
        Other sessions of the user spend from it too, unseen here: their share comes
        back as a refusal's retry_ms."""
        if not isinstance(user_rates, Mapping):
            return
        for kind, covered in USER_RATE_COVERS.items():
            theirs = _bucket_of(user_rates.get(kind), now)
            if theirs is None:
                continue
            rate, capacity = theirs.rate, theirs.capacity
            for session_kind in covered:
                mine = self.buckets.get(session_kind)
                if mine is None:
                    self.buckets[session_kind] = Bucket(rate, capacity, now)
                elif rate < mine.rate or capacity < mine.capacity:
                    self.buckets[session_kind] = Bucket(min(rate, mine.rate),
                                                        min(capacity, mine.capacity), now)

    def wait(self, kind: str | None, now: float) -> float:
        """Seconds before a frame of bucket ``kind`` may go (0: now)."""
        paused = max(0.0, self.paused_until - now)
        bucket = self.buckets.get(kind) if kind is not None else None
        if bucket is None:
            return paused
        return max(paused, bucket.wait(now))

    def take(self, kind: str | None, now: float) -> None:
        bucket = self.buckets.get(kind) if kind is not None else None
        if bucket is not None:
            bucket.take(now)

    def wait_text(self, text: str | None, now: float) -> float:
        """Seconds before a frame storing ``text`` fits the user's text budget."""
        if self.text is None or not text:
            return 0.0
        return self.text.wait(now, len(text.encode("utf-8", "surrogatepass")))

    def take_text(self, text: str | None, now: float) -> None:
        if self.text is not None and text:
            self.text.take(now, len(text.encode("utf-8", "surrogatepass")))

    def wait_bytes(self, size: int, now: float) -> float:
        """Seconds before a frame of ``size`` bytes fits the inbound byte budget."""
        if self.inbound is None:
            return 0.0
        return self.inbound.wait(now, size + FRAME_COST)

    def take_bytes(self, size: int, now: float) -> None:
        if self.inbound is not None:
            self.inbound.take(now, size + FRAME_COST)

    def penalize(self, kind: str | None, retry_ms: int | None, now: float) -> None:
        """The server refused a frame of ``kind``: nothing of that kind for ``retry_ms``."""
        seconds = (retry_ms or 1000) / 1000
        bucket = self.buckets.get(kind) if kind is not None else None
        if bucket is not None:
            bucket.empty_for(seconds, now)
        else:  # a limit we were not told about: wait anyway, for everything
            self.pause(retry_ms, now)

    def pause(self, retry_ms: int | None, now: float) -> None:
        """Send nothing at all for ``retry_ms`` (the inbound byte budget ran out)."""
        self.paused_until = max(self.paused_until, now + (retry_ms or 1000) / 1000)

    # --- the per-pair nudge interval ---------------------------------------------------

    def nudge_wait(self, peer: str, now: float) -> float:
        """Seconds before another nudge to ``peer`` would be accepted (0: now)."""
        last = self._last_nudge.get(peer)
        if last is None or not self.nudge_interval:
            return 0.0
        return max(0.0, last + self.nudge_interval - now)

    def note_nudge(self, peer: str, now: float) -> None:
        if self.nudge_interval:
            if len(self._last_nudge) > 1000:  # keep the map bounded: forget old pairs
                self._last_nudge = {p: t for p, t in self._last_nudge.items()
                                    if now - t < self.nudge_interval}
            self._last_nudge[peer] = now

    def carry_nudges(self, older: Pacer) -> None:
        """Keep the nudge times across a reconnect: the server's pair interval is per
        user, not per session."""
        self._last_nudge = dict(older._last_nudge)


def _bucket_of(spec: Any, now: float) -> Bucket | None:
    """A copy of an advertised ``{per_s, burst}`` bucket, with its reserve; None for a
    shape we do not know."""
    try:
        rate, burst = float(spec["per_s"]), int(spec["burst"])
    except (KeyError, TypeError, ValueError):
        return None
    if rate <= 0 or burst < 1:
        return None
    return Bucket(rate, burst - reserve_of(burst), now)
