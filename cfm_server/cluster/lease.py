"""One holder per cluster: a lease in Redis (SET NX PX, renewed by its holder).

    lease = Lease(batcher, "ai-contacts", holder="node-1", ttl=10.0)
    task = asyncio.create_task(lease.keep(on_acquired=start_ai, on_lost=stop_ai))

Whoever holds the lease does the work (the AI contacts, which must run once per
cluster); the others wait and take over within ``ttl`` of the holder's death (each
tries again as the holder's lease runs out, as Redis told it). The holder renews every
``ttl / 3``. It counts the lease as its own only until ``0.8 × ttl``
after the start of its last successful renewal (by its own clock, from before the request
was sent, so before Redis's expiry with a fifth of ``ttl`` to spare for a late wake-up):
a holder cut off from Redis stops working before another node can take over. (A holder
frozen for longer than that margin could still overlap; work that must never overlap
should also check ``token`` where it writes — a fencing token.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable

from cfm_server.cluster import keys, scripts
from cfm_server.cluster.batcher import Batcher
from cfm_server.cluster.errors import ClusterError
from cfm_server.cluster.outage import level

log = logging.getLogger(__name__)

# The share of ttl a holder trusts its lease for; the rest absorbs a late wake-up.
SAFE_SHARE = 0.8
# How long after another holder's lease should have run out a waiter asks again.
TAKE_AFTER = 0.02


class Lease:
    def __init__(self, batcher: Batcher, name: str, *, holder: str, ttl: float = 10.0) -> None:
        self._batcher = batcher
        self.name = name
        self.key = keys.lease(name)
        # Unique per Lease object: a restarted node with the same name is a new holder.
        self.token = f"{holder}/{secrets.token_hex(6)}"
        self.ttl = ttl
        self._valid_until = 0.0
        self._others_left = ttl  # seconds another holder's lease had left, last we asked

    @property
    def held(self) -> bool:
        return time.monotonic() < self._valid_until

    async def acquire(self) -> bool:
        """Take the lease if free, or renew it if ours: True if we hold it now."""
        started = time.monotonic()
        ok = await self._batcher.eval(scripts.LEASE_ACQUIRE, [self.key],
                                      [self.token, int(self.ttl * 1000)])
        held = ok == 1
        self._valid_until = started + self.ttl * SAFE_SHARE if held else 0.0
        if not held:
            self._others_left = -int(ok) / 1000
        return held

    async def release(self) -> None:
        self._valid_until = 0.0
        await self._batcher.eval(scripts.LEASE_RELEASE, [self.key], [self.token])

    async def keep(self, on_acquired: Callable[[], Awaitable[None]],
                   on_lost: Callable[[], Awaitable[None]]) -> None:
        """Hold the lease when possible, forever: call ``on_acquired`` when it becomes
        ours and ``on_lost`` as soon as it may have stopped being ours (at the latest when
        our validity ends, even if Redis does not answer). Cancel to stop (released)."""
        working = False
        try:
            while True:
                attempt = asyncio.ensure_future(self.acquire())
                # Never wait for Redis past our validity: stop working in time instead.
                wait = max(self._valid_until - time.monotonic(), 0.0) if working else None
                await asyncio.wait({attempt}, timeout=wait)
                if self.held and not working:
                    working = True
                    log.info("lease %s: acquired by %s", self.name, self.token)
                    await on_acquired()
                elif working and not self.held:
                    working = False
                    log.warning("lease %s: lost by %s", self.name, self.token)
                    await on_lost()
                if not attempt.done():
                    await asyncio.wait({attempt})  # one request at a time
                if not attempt.cancelled() and attempt.exception() is not None:
                    exc = attempt.exception()
                    log.log(level(exc), "lease %s: %s", self.name, exc)
                delay = self.ttl / 3
                if working:
                    delay = min(delay, max(self._valid_until - time.monotonic(), 0.0))
                elif not attempt.cancelled() and attempt.exception() is None:
                    # Someone else's: try again as it runs out (a dead holder's is then
                    # taken at once, not up to a third of ttl later).
                    delay = min(delay, self._others_left + TAKE_AFTER)
                await asyncio.sleep(delay)
        finally:
            if working:
                await on_lost()
                with contextlib.suppress(ClusterError):
                    await self.release()  # else it expires by itself
