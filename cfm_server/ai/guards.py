"""Cost controls between the personas and a paid or fragile backend.

- :class:`DailyQuotas`: successful backend calls per user, per client address, and in
  total, per UTC day, with a smaller per-user quota for new accounts (throw-away
  accounts from one address must not use up what everyone shares). A call reserves its
  slot before it starts (so concurrent calls cannot overshoot the limit) and gives it
  back if it fails.
- :class:`CircuitBreaker`: after ``threshold`` consecutive failures no call goes out
  for ``cooldown`` seconds; then exactly one probe does, and its success closes the
  breaker (its failure opens it again).
- :class:`Guards`: the kill switch, the quotas, the breaker and the request timeout
  around one backend call. A call that may not or did not happen raises :class:`Refused`
  with the reason, which the persona words in character.

Every clock here is injectable (seconds since the epoch) so tests can roll days over
and wait out cool-downs without sleeping.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import NoReturn

from cfm_server.ai.backends import BackendError
from cfm_server.ai.metrics import AIMetrics

logger = logging.getLogger(__name__)

Clock = Callable[[], float]


class Refused(Exception):
    """No answer from the backend; ``reason`` is one of voices.REFUSAL_REASONS."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def utc_day(timestamp: float) -> date:
    return datetime.fromtimestamp(timestamp, UTC).date()


@dataclass(frozen=True, slots=True)
class Caller:
    """Who asks, as far as the server knows: the client address of the user's session
    (None: unknown — an AI contact run against another server — or loopback) and whether
    the account is younger than ``new_account_hours``."""

    address: str | None = None
    new_account: bool = False


# The server's answer to "who is this user?" (see service.hub_callers).
CallerLookup = Callable[[str], Caller]


@dataclass(frozen=True, slots=True)
class Reservation:
    user: str
    day: date
    address: str | None = None


class DailyQuotas:
    """Per-user, per-address and global counts of successful calls for the current UTC
    day. A new account's per-user limit is ``per_new_user``.

    A limit of 0 means no limit.
    """

    def __init__(self, per_user: int, total: int, *, per_address: int = 0,
                 per_new_user: int = 0, clock: Clock = time.time) -> None:
        self.per_user = per_user
        self.total = total
        self.per_address = per_address
        self.per_new_user = per_new_user
        self._clock = clock
        self._day = utc_day(clock())
        self._used: Counter[str] = Counter()
        self._pending: Counter[str] = Counter()
        self._used_by_address: Counter[str] = Counter()
        self._pending_by_address: Counter[str] = Counter()
        self._used_total = 0
        self._pending_total = 0

    def _roll_over(self) -> date:
        today = utc_day(self._clock())
        if today != self._day:
            self._day = today
            self._used.clear()
            self._pending.clear()
            self._used_by_address.clear()
            self._pending_by_address.clear()
            self._used_total = self._pending_total = 0
        return today

    def used_by_address(self, address: str) -> int:
        self._roll_over()
        return self._used_by_address[address]

    def _user_limit(self, caller: Caller) -> int:
        if caller.new_account and self.per_new_user:
            return min(self.per_user, self.per_new_user) if self.per_user else self.per_new_user
        return self.per_user

    def used(self, user: str) -> int:
        self._roll_over()
        return self._used[user]

    @property
    def used_total(self) -> int:
        self._roll_over()
        return self._used_total

    def reserve(self, user: str, caller: Caller = Caller()) -> Reservation:
        """Hold a slot for one call, or raise :class:`Refused` if a limit is reached.

        Over the address's or a new account's quota the reason is ``user_quota`` too:
        to the person it is their own allowance that ran out."""
        today = self._roll_over()
        if self.total and self._used_total + self._pending_total >= self.total:
            raise Refused("global_quota")
        limit = self._user_limit(caller)
        if limit and self._used[user] + self._pending[user] >= limit:
            raise Refused("user_quota", user)
        address = caller.address if self.per_address else None
        if address is not None and (self._used_by_address[address]
                                    + self._pending_by_address[address] >= self.per_address):
            raise Refused("user_quota", f"{user} from {address}")
        self._pending[user] += 1
        self._pending_total += 1
        if address is not None:
            self._pending_by_address[address] += 1
        return Reservation(user, today, address)

    def settle(self, reservation: Reservation, *, success: bool) -> None:
        """The call is over: count it if it succeeded, free its slot either way."""
        if self._roll_over() != reservation.day:
            return  # yesterday's slot; today's counts started from zero
        self._pending[reservation.user] -= 1
        if self._pending[reservation.user] <= 0:
            del self._pending[reservation.user]
        self._pending_total -= 1
        address = reservation.address
        if address is not None:
            self._pending_by_address[address] -= 1
            if self._pending_by_address[address] <= 0:
                del self._pending_by_address[address]
        if success:
            self._used[reservation.user] += 1
            self._used_total += 1
            if address is not None:
                self._used_by_address[address] += 1


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"  # one probe is out


class CircuitBreaker:
    def __init__(self, threshold: int = 3, cooldown: float = 60.0, *,
                 clock: Clock = time.time) -> None:
        self.threshold = max(1, threshold)
        self.cooldown = cooldown
        self._clock = clock
        self.state = BreakerState.CLOSED
        self.failures = 0
        self._opened_at = 0.0

    def allow(self) -> bool:
        """May a call go out now? Moving to half-open hands out the one probe."""
        if self.state is BreakerState.CLOSED:
            return True
        if self.state is BreakerState.OPEN and self._clock() - self._opened_at >= self.cooldown:
            self.state = BreakerState.HALF_OPEN
            logger.info("AI backend breaker half-open: sending one probe")
            return True
        return False

    def record_success(self) -> None:
        if self.state is not BreakerState.CLOSED:
            logger.info("AI backend breaker closed: the backend answers again")
        self.state = BreakerState.CLOSED
        self.failures = 0

    def record_failure(self) -> None:
        self.failures += 1
        if self.state is BreakerState.HALF_OPEN or self.failures >= self.threshold:
            if self.state is not BreakerState.OPEN:
                logger.warning("AI backend breaker open after %d failures; cooling down %.0f s",
                               self.failures, self.cooldown)
            self.state = BreakerState.OPEN
            self._opened_at = self._clock()

    def abandon_probe(self) -> None:
        """The probe was cancelled without an answer: let the next call probe at once."""
        if self.state is BreakerState.HALF_OPEN:
            self.state = BreakerState.OPEN
            self._opened_at = self._clock() - self.cooldown

    @property
    def is_open(self) -> bool:
        return self.state is not BreakerState.CLOSED


class Guards:
    """Everything a backend call must pass, shared by all personas of one process."""

    def __init__(self, *, user_daily_quota: int = 50, global_daily_quota: int = 4000,
                 address_daily_quota: int = 0, new_user_daily_quota: int = 0,
                 request_timeout: float = 20.0, breaker_threshold: int = 3,
                 breaker_cooldown: float = 60.0, kill_switch: bool = False,
                 clock: Clock = time.time, metrics: AIMetrics | None = None,
                 who: CallerLookup | None = None) -> None:
        self.kill_switch = kill_switch
        self.request_timeout = request_timeout
        self.quotas = DailyQuotas(user_daily_quota, global_daily_quota,
                                  per_address=address_daily_quota,
                                  per_new_user=new_user_daily_quota, clock=clock)
        # Set by the server that runs the AI contacts in-process: the address and age of
        # a user's account. Without it only the per-user and global quotas apply.
        self.who = who
        self.breaker = CircuitBreaker(breaker_threshold, breaker_cooldown, clock=clock)
        self.metrics = metrics or AIMetrics()

    def check_kill_switch(self, persona: str) -> None:
        if self.kill_switch:
            self.refuse(persona, "kill_switch")

    def refuse(self, persona: str, reason: str, detail: str = "") -> NoReturn:
        self.metrics.refusals.labels(persona=persona, reason=reason).inc()
        raise Refused(reason, detail)

    async def call(self, persona: str, user: str, backend: str,
                   request: Callable[[], Awaitable[str]]) -> str:
        """Run ``request`` if the guards allow it; its text, or :class:`Refused`."""
        self.check_kill_switch(persona)
        caller = self.who(user) if self.who is not None else Caller()
        try:
            reservation = self.quotas.reserve(user, caller)
        except Refused as refused:
            self.refuse(persona, refused.reason, user)
        if not self.breaker.allow():
            self.quotas.settle(reservation, success=False)
            self.refuse(persona, "breaker")
        outcome = "error"
        try:
            async with asyncio.timeout(self.request_timeout):
                text = await request()
            outcome = "ok"
        except TimeoutError:
            outcome = "timeout"
            logger.warning("AI backend %s timed out after %.1f s", backend, self.request_timeout)
        except BackendError as exc:
            logger.warning("AI backend %s failed: %s", backend, exc)
        except asyncio.CancelledError:
            outcome = "cancelled"
            self.breaker.abandon_probe()
            self.quotas.settle(reservation, success=False)
            raise
        except Exception:
            # A bug or a shape we did not expect: still the backend's failure, not silence.
            logger.exception("AI backend %s: unexpected error", backend)
        finally:
            self.metrics.backend_calls.labels(persona=persona, backend=backend,
                                              outcome=outcome).inc()
        if outcome != "ok":
            self.breaker.record_failure()
            self.metrics.breaker_open.set(1 if self.breaker.is_open else 0)
            self.quotas.settle(reservation, success=False)
            self.refuse(persona, "backend_error", outcome)
        self.breaker.record_success()
        self.metrics.breaker_open.set(0)
        self.quotas.settle(reservation, success=True)
        return text
