"""The reconnect schedule: jittered exponential back-off, pure and seedable.

Attempt ``n`` waits a random time in ``[d/2, d]`` with ``d = min(cap, base * 2**n)``
("equal jitter"): never less than half the nominal delay, so a restarting server is not
hammered, and spread out, so a thousand clients cut at once do not come back in step.
"""

from __future__ import annotations

import random


class Backoff:
    """Delays before successive reconnect attempts; :meth:`reset` after a good connection."""

    def __init__(
        self, base: float = 0.5, cap: float = 30.0, *, rng: random.Random | None = None
    ) -> None:
        if base <= 0 or cap < base:
            raise ValueError("want 0 < base <= cap")
        self.base = base
        self.cap = cap
        self.attempt = 0
        self._rng = rng or random.Random()

    def nominal(self, attempt: int) -> float:
        """The un-jittered ceiling of attempt ``attempt`` (0-based)."""
        # min() before the power would be nicer, but 2**attempt is exact and attempt stays
        # small: it stops growing once the cap is reached.
        return min(self.cap, self.base * 2**attempt)

    def next(self) -> float:
        """The delay before the next attempt, in seconds; each call moves one step on."""
        ceiling = self.nominal(self.attempt)
        if ceiling < self.cap:
            self.attempt += 1
        return self._rng.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self.attempt = 0

    def after(self, seconds: float) -> float:
        """A wait of at least ``seconds`` (a server's hint), spread up to half as much
        again so that the clients it told the same do not come back in step. The
        schedule does not move on: the server paces us, not our failures."""
        return self._rng.uniform(seconds, seconds * 1.5)

    def capped(self, cap: float) -> Backoff:
        """A fresh schedule with the same base and jitter source, but a lower cap."""
        return Backoff(self.base, max(self.base, min(cap, self.cap)), rng=self._rng)
