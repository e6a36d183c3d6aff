"""Who is online, cluster-wide: sessions counted per node, nodes kept alive by heartbeats.

Redis holds, under the ``{presence}`` hash tag:

    nodes          zset node → expiry (ms, Redis's clock: node clocks may disagree)
    node:<node>    hash user → that user's sessions on the node
    user:<user>    hash node → that user's sessions there; the key exists iff online

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


@dataclass(frozen=True, slots=True)
class Counted:
    """What counting one session in or out did, cluster-wide."""

    changed: bool  # the user came online, or went offline
    nodes: int  # nodes holding a session of the user now
    back: bool  # came online while the grace mark of its last sign-out was set


class Presence:
    def __init__(self, batcher: Batcher, node: str, *, expiry: float = DEFAULT_EXPIRY,
                 grace: float = 0.0) -> None:
        self._batcher = batcher
        self.node = scripts.check_token(node, "node id")
        self.expiry = expiry
        self.grace = grace
        # The grace mark outlives the grace (a node's timer may fire late), but not for
        # ever (a node that died during the grace never takes it).
        self._mark_ms = int((grace * 2 + 5) * 1000) if grace > 0 else 0
        self.sessions: Counter[str] = Counter()  # user → sessions on this node
        self._beats: asyncio.Task[None] | None = None
        self.reaped = 0  # other nodes this one reaped (their heartbeats expired)
        # Told the users a re-registration brought back (``rejoin``): the node was reaped
        # while alive and every node told their watchers they went ('gone').
        self.on_back: Callable[[list[str]], None] | None = None

    @property
    def beat_interval(self) -> float:
        return self.expiry / 3

    async def start(self) -> list[str]:
        """Register the node (with any sessions it has) and start beating."""
        came = await self.rejoin()
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
             keys.presence_grace(user)],
            [self.node, user, delta, keys.PRESENCE_CHANNEL, self._mark_ms,
             keys.PRESENCE_SPREAD])
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
        """Register this node and all its sessions afresh: the users that came online."""
        argv: list[str | int] = [self.node, self._lifetime_ms(), keys.PRESENCE_PREFIX,
                                 keys.PRESENCE_CHANNEL]
        for user, count in self.sessions.items():
            argv += (user, count)
        reply = await self._batcher.eval(scripts.PRESENCE_REJOIN, [keys.PRESENCE_NODES], argv)
        came = [u.decode() for u in reply]
        if came and self.on_back is not None:
            self.on_back(came)
        return came

    async def beat(self, *, leaving: bool = False) -> list[str]:
        """One heartbeat (and reaping round): the users that went offline cluster-wide."""
        reply = await self._batcher.eval(
            scripts.PRESENCE_BEAT, [keys.PRESENCE_NODES],
            [self.node, 0 if leaving else self._lifetime_ms(), keys.PRESENCE_PREFIX,
             keys.PRESENCE_CHANNEL])
        registered, reaped, *gone = reply
        for i in range(0, len(reaped), 3):
            self.reaped += 1
            log.warning("node %s reaped by node %s (its heartbeat expired, presence_expiry "
                        "%g s): %d of its %d users went offline", reaped[i].decode(),
                        self.node, self.expiry, reaped[i + 2], reaped[i + 1])
        if not registered and not leaving:
            log.warning("node %s was reaped while alive (late heartbeats); registering again",
                        self.node)
            await self.rejoin()
        return [u.decode() for u in gone]

    def _lifetime_ms(self) -> int:
        return int(self.expiry * 2 / 3 * 1000)

    async def _beat_forever(self) -> None:
        while True:
            await asyncio.sleep(self.beat_interval)
            try:
                await self.beat()
            except ClusterError as exc:  # unavailable: the next beat tries again
                log.log(level(exc), "presence heartbeat failed: %s", exc)
