"""Per-user and per-address limits counted cluster-wide (``admission.SharedLimits``).

A user's buckets (says, stranger DMs, contact requests, new rooms, typing, presence)
are shared by all of the user's sessions. On a cluster:

- **On this node alone** (nearly everyone: one session, or all on one node) the user
  spends from this node's own bucket, as on a single node: no Redis call per frame.
- **On several nodes** (``spread``): every charge is one ``limit_take.lua`` call on the
  user's bucket in Redis (one key per user and kind, tagged by user), in the node's
  loop-turn pipeline; the frame waits for the answer (``admission.ChargeLater``), so
  the sessions on every node together get what one session would. Each answer also
  sets this node's own bucket to what Redis holds, so that when the user is back on
  one node that node goes on from the cluster's count.
- **The switch.** The presence script publishes ``many <user>`` when the user's
  sessions go from one node to two and ``one <user>`` back (``keys.PRESENCE_SPREAD``);
  a node signing a user in asks Redis whether another node holds them (before the
  welcome). On ``many`` each node holding the user hands its own bucket to Redis (the
  shared one keeps the lower count); on ``one`` the remaining node reads Redis's count
  back before spending locally again.
- **New handles per address** are counted in Redis for every sign-up (they are rare):
  before a sign-up's hello is answered (``before_sign_up``).
- **Open connections per address** (``max_conns_per_ip``) are counted in Redis too
  (``ClusterConnections``), at each WebSocket handshake and close, besides each node's
  own count at accept (which stays the cheap first guard).
- **Redis out of reach**: the local bucket answers (fail open to the node's own count:
  a user on two nodes then gets up to two budgets until Redis is back, rather than
  nobody being able to talk).

Messages are not delayed for a user on one node; for one on several, each limited
frame waits one round trip to Redis (``docs/cluster.md``, "Limits and the presence
grace on a cluster").
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from cfm_server.admission import Admission
from cfm_server.cluster import keys, scripts
from cfm_server.cluster.batcher import Batcher
from cfm_server.cluster.errors import ClusterError, ClusterUnavailable
from cfm_server.limits import KeyedBuckets
from cfm_server.netaddr import address_key, is_loopback

log = logging.getLogger(__name__)

T = TypeVar("T")

LIMIT_TAKE = scripts.load("limit_take")
CONN_COUNT = scripts.load("conn_count")
CONN_RESTORE = scripts.load("conn_restore")


class ClusterLimits:
    def __init__(self, batcher: Batcher, admission: Admission,
                 local_sessions: Callable[[str], int]) -> None:
        self._batcher = batcher
        self._admission = admission
        self._local_sessions = local_sessions  # user → sessions on this node
        self.spread_users: set[str] = set()  # users with sessions on another node too
        admission.shared = self

    # --- SharedLimits --------------------------------------------------------------------

    def spread(self, user: str) -> bool:
        return user in self.spread_users

    def take(self, kind: str, user: str, cost: int = 1) -> asyncio.Future[int]:
        buckets = self._admission.user_limits.kinds[kind]
        # At most the burst, as KeyedBuckets.take: a bigger cost waits for a full bucket.
        return self._take(keys.user_limit(user, kind), buckets, user,
                          min(cost, buckets.burst))

    # --- the switch ----------------------------------------------------------------------

    def on_spread(self, data: bytes) -> None:
        """``many <user>`` / ``one <user>`` from the presence script."""
        op, _, name = data.decode().partition(" ")
        if op == "many":
            if self._local_sessions(name) > 0:
                self.mark_spread(name)
        elif op == "one" and name in self.spread_users:
            self._spawn(self._back_to_one(name))

    def mark_spread(self, user: str) -> None:
        """``user`` has sessions on another node too: from now on its charges go to
        Redis, which first gets this node's own counts."""
        if user in self.spread_users:
            return
        self.spread_users.add(user)
        now = time.monotonic()
        for kind, buckets in self._admission.user_limits.kinds.items():
            tokens = buckets.tokens(user, now)
            if tokens is not None:
                self._take(keys.user_limit(user, kind), buckets, user, 0, tokens)

    def forget(self, user: str) -> None:
        """The last session of ``user`` here ended: nothing here is charged to it."""
        self.spread_users.discard(user)

    async def _back_to_one(self, user: str) -> None:
        reads = [self._take(keys.user_limit(user, kind), buckets, user, 0)
                 for kind, buckets in self._admission.user_limits.kinds.items()]
        await asyncio.gather(*reads)  # each answer set the local bucket
        self.spread_users.discard(user)

    # --- sign-ups ------------------------------------------------------------------------

    async def before_sign_up(self, ip: str) -> None:
        """Count a sign-up from ``ip`` in Redis; the verdict is what the hello's charge
        (``Admission.charge_signup``) answers."""
        admission = self._admission
        buckets = admission.signups
        if buckets is None or not ip or is_loopback(ip):
            return
        key = address_key(ip)
        verdict = await self._take(keys.address_limit(key, "signup"), buckets, key, 1)
        admission.signup_verdicts[key] = verdict

    async def before_sign_in(self, user: str) -> int:
        """Count a sign-in of ``user`` in Redis (all nodes together): its ``retry_ms``, 0
        if it may; the hello's charge (``Admission.charge_signin``) answers by it."""
        admission = self._admission
        buckets = admission.user_limits.kinds.get("signin")
        if buckets is None or user in admission.server_bots:
            return 0
        verdict = await self._take(keys.user_limit(user, "signin"), buckets, user, 1)
        admission.signin_verdicts[user] = verdict
        return verdict

    # --- Redis ---------------------------------------------------------------------------

    def _take(self, key: str, buckets: KeyedBuckets, name: str, cost: int,
              floor: float | None = None) -> asyncio.Future[int]:
        verdict: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        if cost > 0 and floor is None:
            # This node's bucket mirrors the cluster's count as Redis last answered it
            # (refilled since at the same rate; other nodes only spend from it): short
            # of ``cost`` here, it is short in Redis too. A refusal costs no Redis call:
            # a flood of refused sign-ups (27,000 hellos in 10 s from one address) was
            # one script call each.
            now = time.monotonic()
            tokens = buckets.tokens(name, now)
            if tokens is not None and tokens < cost:
                verdict.set_result(buckets.take(name, now, cost))
                return verdict
        reply = self._batcher.eval(LIMIT_TAKE, [key], [
            repr(buckets.rate), buckets.burst, cost, "" if floor is None else repr(floor)])

        def settle(done: asyncio.Future[Any]) -> None:
            if verdict.done():
                return
            now = time.monotonic()
            if done.cancelled() or done.exception() is not None:
                # Out of reach: this node's own count decides (fail open to it).
                if not done.cancelled():
                    log.debug("a shared limit is counted here only: %s", done.exception())
                verdict.set_result(buckets.take(name, now, cost) if cost else 0)
                return
            retry_ms, tokens = done.result()
            buckets.set(name, float(tokens), now)  # the cluster's count, mirrored here
            verdict.set_result(int(retry_ms))

        reply.add_done_callback(settle)
        return verdict

    def _spawn(self, work: Any) -> None:
        task = asyncio.ensure_future(work)
        task.add_done_callback(_quiet)


class ClusterConnections:
    """Open connections per client address over every node (``conn_count.lua``).

    Another node's counts stand while that life holds the node id, has not expired and
    has its pub/sub connection open (it subscribes ``life_channel``): a SIGKILLed node's
    counts are released as soon as Redis has seen its connections close, so its clients
    get in on the other nodes at once. A node only cut off from Redis looks the same for
    that while; its counts are set aside, not lost, and this node takes its own back
    (``restore``) once it is subscribed (and registered) again."""

    def __init__(self, batcher: Batcher, origin: str, limit: int) -> None:
        self._batcher = batcher
        # This life of the node: a previous life's counts are void. (``lives`` names the
        # life holding the node id: written by its claim, presence_rejoin.lua.)
        self._origin = origin
        self._limit = limit
        self._counted: dict[Hashable, str] = {}  # connection → its address, counted
        # Subscribed by this node for as long as its pub/sub connection is open.
        self.life_channel = keys.presence_life(origin)
        self._restoring: asyncio.Future[None] | None = None
        self._restore_wanted = False

    def restore(self) -> None:
        """Count again what other nodes released of this life's connections while it
        looked gone (its pub/sub connection dropped, or its registration expired): called
        once its subscriptions are confirmed again, and after it registered again. Tried
        until Redis answers (the pub/sub connection may be back before the commands'),
        and once more if asked again meanwhile."""
        self._restore_wanted = True
        if self._restoring is None or self._restoring.done():
            self._restoring = asyncio.ensure_future(self._restore())
            self._restoring.add_done_callback(_quiet)

    def close(self) -> None:
        if self._restoring is not None:
            self._restoring.cancel()

    async def _restore(self) -> None:
        while self._restore_wanted:
            self._restore_wanted = False
            try:
                restored = await self._batcher.eval(
                    CONN_RESTORE, [keys.presence_released(self._origin)],
                    [self._origin, keys.PRESENCE_PREFIX])
            except ClusterUnavailable as exc:
                self._restore_wanted = True
                await asyncio.sleep(max(exc.retry_ms, 50) / 1000)
                continue
            if restored:
                log.info("%s: %d connections of this node counted again against their "
                         "addresses' cap (released while it looked gone to Redis)",
                         self._origin, restored)

    async def admit(self, connection: Hashable, ip: str, refusal: T) -> T | None:
        """Count ``connection`` from ``ip`` (a handshake): None, or ``refusal`` if its
        address is at the cap on the cluster. Redis out of reach: counted on this node
        only (its own cap still holds).

        A count Redis made is taken back when the connection is lost, whatever became of
        the handshake: a client that hangs up before the answer (websockets then runs no
        handler) or a handshake that timed out while Redis was slow (the count is made
        when Redis gets to it) would otherwise hold its address's count for good — and
        32 of them shut the address out of every node."""
        counting = self._count(ip, 1)
        counting.add_done_callback(functools.partial(self._made, connection, ip))
        try:
            counted = bool(await asyncio.shield(counting))
        except ClusterError as exc:
            log.debug("connections from %s counted on this node only: %s", ip, exc)
            return None
        return None if counted else refusal

    def _made(self, connection: Hashable, ip: str, counting: asyncio.Future[Any]) -> None:
        if counting.cancelled() or counting.exception() is not None or not counting.result():
            return
        self._counted[connection] = ip
        lost: asyncio.Future[None] | None = getattr(connection, "connection_lost_waiter", None)
        if lost is not None:  # (websockets' connection: done once the TCP connection is)
            lost.add_done_callback(lambda _: self.release(connection))

    def release(self, connection: Hashable) -> None:
        """``connection`` ended, or its handshake was refused after ``admit``."""
        ip = self._counted.pop(connection, None)
        if ip is not None:
            self._count(ip, -1).add_done_callback(_quiet)

    def _count(self, ip: str, delta: int) -> asyncio.Future[Any]:
        address = address_key(ip)
        return self._batcher.eval(
            CONN_COUNT, [keys.PRESENCE_NODES, keys.PRESENCE_LIVES, keys.presence_conns(address)],
            [self._origin, delta, self._limit, address, keys.PRESENCE_PREFIX])


def _quiet(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and isinstance(task.exception(), ClusterError):
        log.debug("shared limits: %s", task.exception())
