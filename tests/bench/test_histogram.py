"""The latency histogram: bucket edges, percentiles within 1.6 %, merging."""

from __future__ import annotations

import random

import pytest

from cfm_bench.histogram import Histogram, bucket_of, value_of


@pytest.mark.parametrize("us", [0, 1, 127, 128, 129, 1000, 65_535, 10**6, 7 * 10**9])
def test_a_value_lies_within_its_bucket_and_the_edge_is_close(us: int) -> None:
    edge = value_of(bucket_of(us))
    assert edge >= us
    assert edge - us <= max(1, us / 64)


def test_buckets_grow_with_the_value() -> None:
    indexes = [bucket_of(us) for us in range(0, 200_000, 7)]
    assert indexes == sorted(indexes)


def test_percentiles_match_sorted_samples() -> None:
    rng = random.Random(7)
    samples = [int(rng.expovariate(1 / 2000)) for _ in range(20_000)]
    h = Histogram()
    for us in samples:
        h.add(us)
    ordered = sorted(samples)
    for p in (50, 99, 99.9):
        exact = ordered[int(p / 100 * len(ordered)) - 1] / 1000
        got = h.percentile(p)
        assert got is not None
        assert exact <= got <= exact * 1.02 + 0.002


def test_merge_adds_counts() -> None:
    a, b = Histogram(), Histogram()
    for us in (10, 20, 30):
        a.add(us)
    b.add(5000)
    a.merge(b.counts)
    assert a.total == 4
    assert a.percentile(100) == pytest.approx(5.0, rel=0.02)
    assert Histogram().percentile(50) is None
