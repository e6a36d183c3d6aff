"""The reconnect schedule (cfm_common._backoff)."""

from __future__ import annotations

import random

import pytest

from cfm_common._backoff import Backoff


def test_delays_grow_from_half_a_second_to_thirty_seconds_with_jitter() -> None:
    backoff = Backoff(rng=random.Random(1))
    delays = [backoff.next() for _ in range(12)]
    ceilings = [min(30.0, 0.5 * 2**n) for n in range(12)]
    for delay, ceiling in zip(delays, ceilings, strict=True):
        assert ceiling / 2 <= delay <= ceiling
    assert max(delays) <= 30.0
    assert delays[-1] >= 15.0


def test_jitter_spreads_clients_out() -> None:
    firsts = {round(Backoff(rng=random.Random(seed)).next(), 6) for seed in range(20)}
    assert len(firsts) > 10


def test_reset_starts_again_from_the_base() -> None:
    backoff = Backoff(rng=random.Random(2))
    for _ in range(8):
        backoff.next()
    backoff.reset()
    assert backoff.next() <= 0.5


def test_the_attempt_counter_stops_at_the_cap() -> None:
    backoff = Backoff(rng=random.Random(3))
    for _ in range(1000):
        backoff.next()
    assert backoff.attempt < 10


def test_nonsense_parameters_are_refused() -> None:
    with pytest.raises(ValueError):
        Backoff(base=0)
    with pytest.raises(ValueError):
        Backoff(base=5, cap=1)
