"""KeyedBuckets stays bounded however many keys come, and forgets only what it may."""

from __future__ import annotations

from cfm_server.limits import KeyedBuckets


def test_full_buckets_are_forgotten_and_busy_ones_kept() -> None:
    buckets = KeyedBuckets(rate=1.0, burst=2, max_keys=4)
    assert buckets.take("busy", 0.0) == 0 and buckets.take("busy", 0.0) == 0
    for key in ("a", "b", "c"):
        buckets.take(key, 100.0)  # a, b, c spent one token; busy has refilled by now
    buckets.take("d", 100.0)  # the map is full: "busy" (full again) is forgotten
    assert "busy" not in buckets.buckets and {"a", "b", "c", "d"} <= set(buckets.buckets)


def test_many_busy_keys_keep_the_map_bounded() -> None:
    buckets = KeyedBuckets(rate=0.001, burst=1, max_keys=100)
    for n in range(10_000):
        buckets.take(f"k{n}", float(n))
        assert len(buckets.buckets) <= 100
    # The most recent keys are still limited.
    assert buckets.take("k9999", 10_000.0) > 0
