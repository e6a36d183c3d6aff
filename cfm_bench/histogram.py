"""A log-linear latency histogram in microseconds: cheap to add to, exact to merge.

Values below 128 µs get a bucket each; above, every power of two is cut into 64
buckets, so a reported percentile is within 1.6 % of the true value. Buckets are a
plain list of counts, which pickles small and merges by addition across processes.
"""

from __future__ import annotations

_LINEAR = 128
_SUB = 64
_SIZE = _LINEAR + 40 * _SUB  # enough for 2**46 µs


def bucket_of(us: int) -> int:
    if us < _LINEAR:
        return us if us > 0 else 0
    shift = us.bit_length() - 7  # (us >> shift) is in [64, 128)
    return _LINEAR + (shift - 1) * _SUB + ((us >> shift) - _SUB)


def value_of(index: int) -> int:
    """The upper edge of a bucket, in µs (a percentile is never under-reported)."""
    if index < _LINEAR:
        return index
    shift, rest = divmod(index - _LINEAR, _SUB)
    shift += 1
    return ((rest + _SUB + 1) << shift) - 1


class Histogram:
    __slots__ = ("counts", "total")

    def __init__(self, counts: list[int] | None = None) -> None:
        self.counts = counts if counts is not None else [0] * _SIZE
        self.total = sum(self.counts)

    def add(self, us: int) -> None:
        self.counts[bucket_of(us)] += 1
        self.total += 1

    def merge(self, other: Histogram | list[int]) -> None:
        counts = other.counts if isinstance(other, Histogram) else other
        for i, c in enumerate(counts):
            if c:
                self.counts[i] += c
                self.total += c

    def percentile(self, p: float) -> float | None:
        """The p-th percentile (0-100) in milliseconds, None when empty."""
        if not self.total:
            return None
        rank = max(1, int(p / 100.0 * self.total + 0.5))
        seen = 0
        for i, c in enumerate(self.counts):
            seen += c
            if seen >= rank:
                return value_of(i) / 1000.0
        return value_of(len(self.counts) - 1) / 1000.0

    def summary(self) -> dict[str, float | None]:
        return {
            "p50_ms": self.percentile(50),
            "p99_ms": self.percentile(99),
            "p999_ms": self.percentile(99.9),
            "max_ms": self.percentile(100),
            "samples": self.total,
        }
