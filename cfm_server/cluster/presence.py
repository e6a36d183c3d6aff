"""Who is online, cluster-wide: sessions counted per node, nodes kept alive by heartbeats.

Redis holds, under the ``{presence}`` hash tag:

    nodes          zset node → expiry (ms, Redis's clock: node clocks may disagree)
    node:<node>    hash user → that user's sessions on the node
    user:<user>    hash node → that user's sessions there; the key exists iff online
    lives          hash node → the origin ("<node>.<life>") of the process holding it

A node id is held by one process at a time (``claim``): a node starting with an id whose
registration another life holds and has not let expire — a live node with the same id,
or a killed one not yet expired — waits for that registration, and is refused
(``NodeIdTaken``) if its holder beats meanwhile (it is alive). A clean stop leaves at
once, so a restart takes the id again straight away.

A user is online while any node holds a session of theirs. Each node beats every
``expiry / 3``, pushing its own expiry ``2 × expiry / 3`` ahead, and every beat also
reaps: a node past its expiry loses its users (the script publishes ``off <user>`` for
each user that had no other node). So a SIGKILLed node's users go offline within
``expiry`` of its last beat, as long as one node of the cluster lives. A node that missed
its beats and was reaped while alive notices (its next beat or session change says so)
and registers all its sessions again. Every change of a user's cluster-wide state is
published once on ``PRESENCE_CHANNEL`` as ``on <user>`` or ``off <user>``, by the script
that made it, so watchers everywhere see each change once; a user whose last node expired
or left is published as ``gone <user>`` (no node signed them out, so every node tells
its own watchers).

The presence grace across nodes: when a user goes offline cluster-wide the script sets
the user's grace mark; a return (anywhere) within the grace takes it (``Counted.back``),
and the node whose grace timer ends tells watchers "offline" only if it can still take
it (``end_grace``), so a quick return to another node is no news and "offline" is told
once. A user's sessions going from one node to two (or back) is published as ``many`` /
``one`` on ``PRESENCE_SPREAD`` (per-user limits, ``cluster/limits.py``).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from cfm_server.cluster import keys, scripts
from cfm_server.cluster.batcher import Batcher
from cfm_server.cluster.errors import ClusterError
from cfm_server.cluster.outage import level

log = logging.getLogger(__name__)

DEFAULT_EXPIRY = 15.0  # seconds from a node's death to its users shown offline
GRACE_END = scripts.load("presence_grace_end")
# How often a node waiting for its id's previous registration looks again (seconds).
CLAIM_POLL = 0.5


class NodeIdTaken(ClusterError):
    """Another process holds this node id's registration in Redis and has not let it
    expire: the message says what to fix."""

    def __init__(self, node: str, holder: str, left_ms: int, *, alive: bool,
                 expiry: bytes = b"") -> None:
        self.node, self.holder, self.left_ms, self.alive = node, holder, left_ms, alive
        self.expiry = expiry  # the registration's, as Redis holds it: a beat changes it
        if alive:
            what = (f"node id {node!r} is in use by a running node ({holder}, which "
                    f"heartbeats in Redis)")
        else:
            what = (f"node id {node!r} is registered by another process ({holder}) for "
                    f"{left_ms / 1000:.1f} s more")
        super().__init__(f"{what}: give this node its own --node-id (CFM_NODE_ID, node_id "
                         f"in server.toml), or stop the other one first")


@dataclass(frozen=True, slots=True)
class Counted:
    """What counting one session in or out did, cluster-wide."""

    changed: bool  # the user came online, or went offline
    nodes: int  # nodes holding a session of the user now
    back: bool  # came online while the grace mark of its last sign-out was set


class Presence:
    def __init__(self, batcher: Batcher, node: str, *, origin: str | None = None,
                 expiry: float = DEFAULT_EXPIRY, grace: float = 0.0) -> None:
        self._batcher = batcher
        self.node = scripts.check_token(node, "node id")
        # This process's life of the node id: what its registration is held by.
        self.origin = origin or f"{node}.{secrets.token_hex(3)}"
        self.expiry = expiry
        self.grace = grace
        # The grace mark outlives the grace (a node's timer may fire late), but not for
        # ever (a node that died during the grace never takes it).
        self._mark_ms = int((grace * 2 + 5) * 1000) if grace > 0 else 0
        self.sessions: Counter[str] = Counter()  # user → sessions on this node
        self._beats: asyncio.Task[None] | None = None
        self.reaped = 0  # other nodes this one reaped (their heartbeats expired)
        # After a beat of this node failed (Redis out of reach, or refusing), it reaps no
        # other node until a registration lifetime (and a probe's wait) after its next
        # beat that got through: an outage of Redis itself stopped every node's beats, and the first
        # node back must not take the others for dead (``_reap_hold``).
        self._held_since_failure = False
        self._reap_from = 0.0  # monotonic time from which this node reaps again
        # Told the users a re-registration brought back (``rejoin``): the node was reaped
        # while alive and every node told their watchers they went ('gone').
        self.on_back: Callable[[list[str]], None] | None = None
        # Told after every registration made afresh (the claim, or after a reap).
        self.on_rejoined: Callable[[], None] | None = None

    @property
    def beat_interval(self) -> float:
        return self.expiry / 3

    async def claim(self) -> list[str]:
        """Take this node id's registration (no sessions yet), or raise NodeIdTaken.

        Another life's unexpired registration is waited for, at most until it expires (a
        killed node's: the id is free then); a beat of its holder meanwhile (its expiry
        moved) means it is alive: refused. (Whether the holder's connections to Redis are
        gone would not tell a dead node from one cut off from Redis for a moment.)"""
        seen: bytes | None = None  # the holder's expiry when first found
        held: NodeIdTaken | None = None
        # Bounded: a holder's registration lasts one of its lifetimes unless it beats.
        for _ in range(int(self.expiry * 40 / CLAIM_POLL) + 10):
            try:
                came = await self.rejoin()
                if seen is not None:
                    log.info("node id %s: the registration of %s expired; this node holds "
                             "the id now", self.node, held.holder if held else "")
                return came
            except NodeIdTaken as taken:
                held = taken
            if seen is not None and held.expiry != seen:
                raise NodeIdTaken(self.node, held.holder, held.left_ms, alive=True)
            if seen is None:
                log.warning("node id %s is registered by %s, which has not left: waiting up to "
                            "%.1f s for it to expire (if that process is dead) or to beat (if "
                            "it is alive: then this node stops)", self.node, held.holder,
                            held.left_ms / 1000)
                seen = held.expiry
            await asyncio.sleep(min(held.left_ms / 1000 + 0.02, CLAIM_POLL))
        assert held is not None
        raise held

    async def start(self) -> list[str]:
        """Claim the node id, register the node (with any sessions it has) and start
        beating. Raises NodeIdTaken."""
        came = await self.claim()
        self._beats = asyncio.create_task(self._beat_forever())
        return came

    async def close(self) -> list[str]:
        """Leave at once: the node's users without another node go offline now."""
        if self._beats is not None:
            self._beats.cancel()
            await asyncio.wait({self._beats}, timeout=5.0)
        return await self.beat(leaving=True)

    async def session_up(self, user: str) -> bool:
        """A session of ``user`` started here: True if the user just came online."""
        return (await self.count(user, 1)).changed

    async def session_down(self, user: str) -> bool:
        """A session of ``user`` ended here: True if the user just went offline."""
        return (await self.count(user, -1)).changed

    async def count(self, user: str, delta: int) -> Counted:
        """Count a session of ``user`` in (``delta`` 1) or out (-1) here."""
        if delta > 0:
            self.sessions[user] += 1
        elif self.sessions[user] <= 1:
            self.sessions.pop(user, None)
        else:
            self.sessions[user] -= 1
        reply = await self._batcher.eval(
            scripts.PRESENCE_SESSION,
            [keys.PRESENCE_NODES, keys.presence_node(self.node), keys.presence_user(user),
             keys.presence_grace(user), keys.PRESENCE_LIVES],
            [self.node, user, delta, keys.PRESENCE_CHANNEL, self._mark_ms,
             keys.PRESENCE_SPREAD, self.origin])
        if reply == -1:
            # Reaped while alive: registering every session again covers this one too.
            came = await self.rejoin()
            if delta > 0:
                return Counted(user in came, 1, False)
            return Counted(not await self.online([user]), 0, False)
        changed, nodes, back = reply
        return Counted(bool(changed), int(nodes), bool(back))

    async def end_grace(self, user: str) -> bool:
        """The presence grace of ``user``'s sign-out ended here: True if watchers are to
        be told "offline" (the user is still offline and no other node told them)."""
        return bool(await self._batcher.eval(
            GRACE_END, [keys.presence_user(user), keys.presence_grace(user)], []))

    async def in_grace(self, user: str) -> bool:
        """Whether ``user`` went offline cluster-wide and nobody ended its grace yet."""
        return bool(await self._batcher.call("EXISTS", keys.presence_grace(user)))

    async def spread(self, user: str) -> bool:
        """Whether another node holds a session of ``user``."""
        found = await self._batcher.call("HKEYS", keys.presence_user(user))
        return any(node.decode() != self.node for node in found)

    async def online(self, users: list[str]) -> set[str]:
        """Which of ``users`` have a session on some node (one pipeline)."""
        found = await asyncio.gather(*(self._batcher.call("EXISTS", keys.presence_user(u))
                                       for u in users))
        return {u for u, exists in zip(users, found, strict=True) if exists}

    async def rejoin(self) -> list[str]:
        """Register this node and all its sessions afresh: the users that came online.
        NodeIdTaken if another life holds the node id."""
        argv: list[str | int] = [self.node, self._lifetime_ms(), keys.PRESENCE_PREFIX,
                                 keys.PRESENCE_CHANNEL, self.origin]
        for user, count in self.sessions.items():
            argv += (user, count)
        reply = await self._batcher.eval(scripts.PRESENCE_REJOIN,
                                         [keys.PRESENCE_NODES, keys.PRESENCE_LIVES], argv)
        if not reply[0]:
            _, holder, left_ms, expiry = reply
            raise NodeIdTaken(self.node, holder.decode(), int(left_ms), alive=False,
                              expiry=expiry)
        came = [u.decode() for u in reply[1:]]
        if self.on_rejoined is not None:
            self.on_rejoined()
        if came and self.on_back is not None:
            self.on_back(came)
        return came

    async def beat(self, *, leaving: bool = False) -> list[str]:
        """One heartbeat (and reaping round): the users that went offline cluster-wide."""
        try:
            reply = await self._batcher.eval(
                scripts.PRESENCE_BEAT, [keys.PRESENCE_NODES, keys.PRESENCE_LIVES],
                [self.node, 0 if leaving else self._lifetime_ms(), keys.PRESENCE_PREFIX,
                 keys.PRESENCE_CHANNEL, self.origin, int(self._may_reap()),
                 int(self.beat_interval * 1000)])
        except ClusterError:
            self._held_since_failure = True
            raise
        registered, reaped, *gone = reply
        for i in range(0, len(reaped), 3):
            self.reaped += 1
            log.warning("node %s reaped by node %s (its heartbeat expired, presence_expiry "
                        "%g s): %d of its %d users went offline", reaped[i].decode(),
                        self.node, self.expiry, reaped[i + 2], reaped[i + 1])
        if registered == 2 and not leaving:
            # Its registration expired (Redis out of reach, late beats) and another
            # process claimed the id meanwhile: that one's presence stands.
            log.error("node id %s is held by another process now (this node's registration "
                      "expired and it claimed the id): this node's users are not counted in "
                      "the cluster's presence; stop one of the two and give each node its "
                      "own node_id", self.node)
        elif not registered and not leaving:
            log.warning("node %s was reaped while alive (late heartbeats); registering again",
                        self.node)
            await self.rejoin()
        return [u.decode() for u in gone]

    def _lifetime_ms(self) -> int:
        return int(self.expiry * 2 / 3 * 1000)

    def _may_reap(self) -> bool:
        """Whether this beat may reap other nodes: not within a registration lifetime and
        a probe's wait of this node's first beat after a failed one. A node cut off from
        Redis alone is still reaped by the others (their beats never failed); when Redis
        itself was out of reach (a restart from its AOF takes 5-10 s), every node's beats
        failed, and each, back, waits for the others' beats instead of reaping them. A
        node that died meanwhile is reaped that much later (12 s at the defaults)."""
        now = time.monotonic()
        if self._held_since_failure:
            self._held_since_failure = False
            # Every live node notices Redis back within a probe's wait and beats within
            # a beat interval of that: a lifetime (two intervals) and the probe's wait.
            self._reap_from = now + self._lifetime_ms() / 1000 + self._batcher.probe_cap
        return now >= self._reap_from

    async def _beat_forever(self) -> None:
        while True:
            await asyncio.sleep(self.beat_interval)
            try:
                await self.beat()
            except ClusterError as exc:  # unavailable: the next beat tries again
                log.log(level(exc), "presence heartbeat failed: %s", exc)
