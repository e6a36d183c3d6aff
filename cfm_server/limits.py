"""Rate limits and abuse counters: small, clock-driven and free of I/O.

Each session owns a :class:`SessionLimits` (one token bucket per frame kind and an
:class:`AbuseMeter`); the server owns one :class:`IpCounter` and the hub one
:class:`PairInterval` for nudges. All take ``now`` (monotonic seconds) from the caller,
which keeps them deterministic.
"""

from __future__ import annotations

import collections
import math

from cfm_server.config import RATE_KINDS, USER_RATE_KINDS, ServerConfig
from cfm_server.netaddr import address_key


class TokenBucket:
    """``rate`` tokens per second up to ``burst``; a frame spends one."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.stamp = now

    def take(self, now: float, cost: float = 1.0) -> int:
        """Spend ``cost`` tokens: 0 if there were enough, else the milliseconds until there
        are (nothing is spent then). A negative cost gives tokens back (up to the burst):
        what a reservation did not use (``read_budget``)."""
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= cost:
            self.tokens = min(self.burst, self.tokens - cost)
            return 0
        return max(1, math.ceil((cost - self.tokens) / self.rate * 1000))


class AbuseMeter:
    """Counts errors and breaches; too many within ``window`` seconds means abuse."""

    __slots__ = ("events", "limit", "told_until", "window")

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        # Made at the first hit: most sessions never have one, and an empty deque is
        # ~700 bytes of every idle connection.
        self.events: collections.deque[float] | None = None
        self.told_until = 0.0  # the end of the wait the last rate refusal asked for

    def refused(self, now: float, retry_ms: int | None) -> bool:
        """A rate refusal answered with ``retry_ms``; True when that makes abuse. Counted
        (as :meth:`hit`) only when the frame came before the wait an earlier refusal
        asked for was over: a client that waits as told and is refused again (its user's
        other sessions spent the budget they share meanwhile) abuses nothing, while one
        that keeps sending regardless is counted for each frame."""
        ignored = now < self.told_until
        if retry_ms:
            self.told_until = max(self.told_until, now + retry_ms / 1000)
        return ignored and self.hit(now)

    def hit(self, now: float) -> bool:
        """Record one; True when ``limit`` of them fell within the window."""
        events = self.events
        if events is None:
            events = self.events = collections.deque(maxlen=self.limit)
        events.append(now)
        return len(events) == self.limit and now - events[0] <= self.window


# What one inbound frame costs on top of its size: a flood of tiny frames is bounded too.
FRAME_COST = 256


class SessionLimits:
    """The per-session buckets; ``check(kind)`` and ``check_bytes(n)`` answer 0 or a
    ``retry_ms``."""

    __slots__ = ("abuse", "buckets", "inbound")

    def __init__(self, config: ServerConfig, now: float) -> None:
        self.abuse = AbuseMeter(config.abuse_max, config.abuse_window)
        self.buckets: dict[str, TokenBucket] = {}
        # Bytes a session may make the server decode: spent before decoding, because a
        # valid frame of tiny nested containers costs far more to unpack than to send.
        self.inbound: TokenBucket | None = None
        if config.rate_limits:
            for kind in RATE_KINDS:
                rate, burst = config.rate(kind)
                self.buckets[kind] = TokenBucket(rate, burst, now)
            # The burst always admits one frame of max_frame bytes.
            burst = max(config.recv_burst, config.max_frame + FRAME_COST)
            self.inbound = TokenBucket(config.recv_rate, burst, now)

    def check(self, kind: str, now: float) -> int:
        bucket = self.buckets.get(kind)
        return 0 if bucket is None else bucket.take(now)

    def check_bytes(self, size: int, now: float) -> int:
        """Spend the budget of one inbound frame of ``size`` bytes."""
        bucket = self.inbound
        return 0 if bucket is None else bucket.take(now, size + FRAME_COST)

    def lift_buckets(self) -> None:
        """No per-kind buckets: for the server's own bots, whose frames (read marks,
        answers) follow other users' traffic; their bytes are still budgeted."""
        self.buckets.clear()


class KeyedBuckets:
    """One token bucket per key (a client address, a user): ``take(key)`` answers 0 or a
    ``retry_ms``. Full buckets are forgotten when the map grows past ``max_keys``, so an
    attacker with many keys costs bounded memory (a forgotten key starts full again,
    which is where it was)."""

    __slots__ = ("buckets", "burst", "max_keys", "rate")

    def __init__(self, rate: float, burst: int, max_keys: int = 10_000) -> None:
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self.buckets: dict[str, TokenBucket] = {}

    def take(self, key: str, now: float, cost: float = 1.0) -> int:
        """Spend ``cost`` (at most the burst: a bigger one waits for a full bucket)."""
        bucket = self.buckets.get(key)
        if bucket is None:
            if len(self.buckets) >= self.max_keys:
                self._forget_full(now)
            bucket = self.buckets[key] = TokenBucket(self.rate, self.burst, now)
        return bucket.take(now, min(cost, self.burst))

    def tokens(self, key: str, now: float) -> float | None:
        """The tokens ``key``'s bucket holds now; None for a full one (or none)."""
        bucket = self.buckets.get(key)
        if bucket is None:
            return None
        tokens = min(bucket.burst, bucket.tokens + (now - bucket.stamp) * bucket.rate)
        return None if tokens >= bucket.burst else tokens

    def set(self, key: str, tokens: float, now: float) -> None:
        """Make ``key``'s bucket hold ``tokens`` (what a shared count says it holds)."""
        bucket = self.buckets.get(key)
        if bucket is None:
            if len(self.buckets) >= self.max_keys:
                self._forget_full(now)
            bucket = self.buckets[key] = TokenBucket(self.rate, self.burst, now)
        bucket.tokens = min(bucket.burst, tokens)
        bucket.stamp = now

    def _forget_full(self, now: float) -> None:
        buckets = {k: b for k, b in self.buckets.items()
                   if b.tokens + (now - b.stamp) * b.rate < b.burst}
        if len(self.buckets) - len(buckets) < self.max_keys // 4:
            # Still crowded (many keys busy at once): keep the most recently used half,
            # so that each sweep frees room for many inserts (amortised O(1) per key).
            newest = sorted(buckets.items(), key=lambda kb: kb[1].stamp)[-self.max_keys // 2:]
            buckets = dict(newest)
        self.buckets = buckets


class UserLimits:
    """Buckets per user, shared by all of a user's sessions: per-session buckets alone
    multiply with the sessions one person opens (25 sessions, 25 times the says).

    ``check(kind, user)`` answers 0 or a ``retry_ms``; kinds: ``say`` (says and nudges),
    ``stranger`` (DMs to someone who has not listed the sender), ``contact`` (contact
    requests), ``room`` (new group rooms), ``typing``, ``presence``, ``search``,
    ``text`` (bytes of message text: a charge costs the text's size) and ``read`` (bytes
    of stored messages answered: ``read_budget``)."""

    __slots__ = ("kinds",)

    KINDS = tuple(kind.removeprefix("user_") for kind in USER_RATE_KINDS)

    def __init__(self, config: ServerConfig) -> None:
        self.kinds: dict[str, KeyedBuckets] = {}
        if config.rate_limits:
            for kind in self.KINDS:
                self.kinds[kind] = KeyedBuckets(getattr(config, f"user_{kind}_rate"),
                                                getattr(config, f"user_{kind}_burst"))

    def check(self, kind: str, user: str, now: float, cost: int = 1) -> int:
        buckets = self.kinds.get(kind)
        return 0 if buckets is None else buckets.take(user, now, cost)


class PairInterval:
    """At most one event per (a, b) pair per ``interval`` seconds (nudges).

    The event that restarted a pair's clock may come again with its client id (a retry:
    its ack was lost): that one is not refused, so the store can answer it with the
    original ack (a cluster node finds the retry only in Redis, after this check)."""

    __slots__ = ("interval", "last")

    def __init__(self, interval: float) -> None:
        self.interval = interval
        # pair -> (when its clock restarted, the client id of that event or None)
        self.last: dict[tuple[str, str], tuple[float, str | None]] = {}

    def wait(self, a: str, b: str, now: float, event_id: str | None = None) -> int:
        """The milliseconds left to wait, or 0; the clock does not restart."""
        last = self.last.get((a, b))
        if last is None:
            return 0
        when, last_id = last
        if event_id is not None and event_id == last_id:
            return 0  # the same event again
        if now - when < self.interval:
            return max(1, math.ceil((self.interval - (now - when)) * 1000))
        return 0

    def check(self, a: str, b: str, now: float, event_id: str | None = None) -> int:
        """0 and the pair's clock restarts, or the milliseconds left to wait."""
        key = (a, b)
        retry_ms = self.wait(a, b, now, event_id)
        if retry_ms:
            return retry_ms
        last = self.last.get(key)
        if last is not None and event_id is not None and last[1] == event_id:
            return 0  # a retry does not restart the clock
        if len(self.last) > 10_000:
            # Forget pairs whose interval has passed, so the map stays bounded.
            self.last = {k: v for k, v in self.last.items() if now - v[0] < self.interval}
        self.last[key] = (now, event_id)
        return 0


class IpCounter:
    """Open connections per remote IP, for the per-IP cap (an IPv6 client counted by its
    /64: ``netaddr.address_key``)."""

    __slots__ = ("counts", "limit")

    def __init__(self, limit: int | None) -> None:
        self.limit = limit  # None: no cap
        self.counts: collections.Counter[str] = collections.Counter()

    def full(self, ip: str) -> bool:
        return self.limit is not None and self.counts[address_key(ip)] >= self.limit

    def add(self, ip: str) -> bool:
        """Count a connection; False (and not counted) if the IP is at its cap."""
        if self.full(ip):
            return False
        self.counts[address_key(ip)] += 1
        return True

    def remove(self, ip: str) -> None:
        key = address_key(ip)
        self.counts[key] -= 1
        if self.counts[key] <= 0:
            del self.counts[key]
