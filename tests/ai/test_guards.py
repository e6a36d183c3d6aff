"""Quotas per UTC day and the circuit breaker's states, with an injected clock."""

from __future__ import annotations

import pytest

from cfm_server.ai.guards import BreakerState, CircuitBreaker, DailyQuotas, Refused
from tests.ai.conftest import FakeClock


def use(quotas: DailyQuotas, user: str, *, success: bool = True) -> None:
    quotas.settle(quotas.reserve(user), success=success)


def test_user_quota_stops_at_exactly_the_limit(clock: FakeClock) -> None:
    quotas = DailyQuotas(per_user=3, total=100, clock=clock)
    for _ in range(3):
        use(quotas, "alice")
    with pytest.raises(Refused) as refused:
        quotas.reserve("alice")
    assert refused.value.reason == "user_quota"
    use(quotas, "bob")  # others are not affected
    assert quotas.used("alice") == 3 and quotas.used_total == 4


def test_failed_calls_do_not_count(clock: FakeClock) -> None:
    quotas = DailyQuotas(per_user=2, total=100, clock=clock)
    for _ in range(5):
        use(quotas, "alice", success=False)
    use(quotas, "alice")
    use(quotas, "alice")
    with pytest.raises(Refused):
        quotas.reserve("alice")


def test_reservations_in_flight_count_against_the_limit(clock: FakeClock) -> None:
    quotas = DailyQuotas(per_user=2, total=100, clock=clock)
    first, second = quotas.reserve("alice"), quotas.reserve("alice")
    with pytest.raises(Refused):
        quotas.reserve("alice")
    quotas.settle(first, success=False)
    quotas.settle(quotas.reserve("alice"), success=True)
    quotas.settle(second, success=True)
    assert quotas.used("alice") == 2


def test_global_quota(clock: FakeClock) -> None:
    quotas = DailyQuotas(per_user=10, total=3, clock=clock)
    for user in ("a", "b", "c"):
        use(quotas, user)
    with pytest.raises(Refused) as refused:
        quotas.reserve("d")
    assert refused.value.reason == "global_quota"


def test_quotas_reset_at_the_next_utc_day(clock: FakeClock) -> None:
    clock.now += 23 * 3600 + 3599  # 23:59:59 UTC on the first day
    quotas = DailyQuotas(per_user=1, total=1, clock=clock)
    use(quotas, "alice")
    held = None
    with pytest.raises(Refused):
        held = quotas.reserve("alice")
    assert held is None
    clock.advance(1)  # midnight UTC
    use(quotas, "alice")
    assert quotas.used("alice") == 1 and quotas.used_total == 1


def test_a_slot_reserved_yesterday_settles_harmlessly_today(clock: FakeClock) -> None:
    quotas = DailyQuotas(per_user=1, total=5, clock=clock)
    yesterday = quotas.reserve("alice")
    clock.advance(86_400)
    quotas.settle(yesterday, success=True)
    assert quotas.used("alice") == 0
    use(quotas, "alice")


def test_zero_means_no_limit(clock: FakeClock) -> None:
    quotas = DailyQuotas(per_user=0, total=0, clock=clock)
    for _ in range(200):
        use(quotas, "alice")
    assert quotas.used("alice") == 200


def test_breaker_opens_after_threshold_and_probes_once(clock: FakeClock) -> None:
    breaker = CircuitBreaker(threshold=3, cooldown=60, clock=clock)
    for _ in range(2):
        assert breaker.allow()
        breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED
    assert breaker.allow()
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    assert not breaker.allow()
    clock.advance(59.9)
    assert not breaker.allow()
    clock.advance(0.1)
    assert breaker.allow()  # the probe
    assert breaker.state is BreakerState.HALF_OPEN
    assert not breaker.allow()  # only one
    breaker.record_failure()  # the probe failed: open again, a full cool-down
    assert breaker.state is BreakerState.OPEN
    clock.advance(59)
    assert not breaker.allow()
    clock.advance(1)
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED and breaker.failures == 0
    assert breaker.allow() and breaker.allow()


def test_a_success_resets_the_failure_count(clock: FakeClock) -> None:
    breaker = CircuitBreaker(threshold=2, cooldown=60, clock=clock)
    breaker.record_failure()
    breaker.record_success()
    breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED


def test_an_abandoned_probe_lets_the_next_call_probe(clock: FakeClock) -> None:
    breaker = CircuitBreaker(threshold=1, cooldown=60, clock=clock)
    breaker.record_failure()
    clock.advance(60)
    assert breaker.allow()
    breaker.abandon_probe()
    assert breaker.state is BreakerState.OPEN
    assert breaker.allow()
