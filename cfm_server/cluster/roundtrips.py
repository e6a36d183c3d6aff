"""A histogram of pipeline round trips in plain ints, read by ``/metrics`` at a scrape.

The batcher observes every pipeline, so this sits on the hot path of a durable ``say``:
a prometheus ``Histogram.observe`` takes a lock and walks the buckets; this is one
``bisect`` and two additions (``nodemetrics.py`` turns it into the exposition's
cumulative buckets).
"""

from __future__ import annotations

from bisect import bisect_left

# Seconds. A loopback pipeline takes ~0.2 ms when idle; a busy node's tens of ms; the
# batcher's deadline (socket_timeout) is 5 s.
BOUNDS = (0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0,
          2.5, 5.0)


class RoundTrips:
    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...] = BOUNDS) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last: above every bound (+Inf)
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(self.bounds, seconds)] += 1
        self.sum += seconds

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[str, int]]:
        """``(le, count)`` pairs as the exposition wants them, ``+Inf`` last."""
        out: list[tuple[str, int]] = []
        total = 0
        for bound, n in zip((*map(str, self.bounds), "+Inf"), self.counts, strict=True):
            total += n
            out.append((bound, total))
        return out
