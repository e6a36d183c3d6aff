"""A cluster node's side of presence: its sessions counted in the cluster's presence
(``Presence``), what the other nodes tell it, the presence grace across nodes, and the
switch of per-user limits between this node's buckets and Redis's (``ClusterLimits``).

The grace across nodes (docs/cluster.md, "Limits and the presence grace on a cluster"):

- the node where a user's last session in the cluster ends waits ``presence_grace`` as
  a single node does, then asks Redis (``Presence.end_grace``) and tells watchers
  "offline" only if the user is still offline and nobody took the grace mark;
- a node signing in a user whose grace mark is set (they went offline elsewhere a
  moment ago), or whom another node holds, holds the user as "going offline" here too
  (``PresenceHandler.hold_offline``), so the sign-in is told to watchers only if what
  they see changed;
  counting the new session takes the mark, so no node then tells "offline". If the
  node that ended the grace took the mark first (a return at the very end of the
  grace), the count says so and this node tells watchers the user is online.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Protocol

import msgpack

from cfm_common.errors import ProtocolError
from cfm_common.rules import Status
from cfm_server.cluster import keys
from cfm_server.cluster.comeback import Comebacks
from cfm_server.cluster.errors import ClusterError
from cfm_server.cluster.limits import ClusterConnections, ClusterLimits
from cfm_server.cluster.outage import level
from cfm_server.cluster.presence import Presence

if TYPE_CHECKING:
    from cfm_server.cluster.broker import Broker
    from cfm_server.cluster.delivery import ClusterDelivery
    from cfm_server.config import ServerConfig
    from cfm_server.domain.presence import PresenceHandler
    from cfm_server.domain.world import World
    from cfm_server.hub import Hub
    from cfm_server.state import User

log = logging.getLogger(__name__)


class NodeParts(Protocol):
    """What of its ``ClusterNode`` this needs."""

    origin: str
    config: ServerConfig
    broker: Broker
    world: World | None
    delivery: ClusterDelivery | None


class NodePresence:
    def __init__(self, node: NodeParts, presence: Presence) -> None:
        self._node = node
        self.presence = presence
        self.limits: ClusterLimits | None = None  # once the hub exists (``start``)
        config = node.config
        # The per-address cap over the cluster (None: no cap).
        self.conns = (ClusterConnections(node.broker.batcher, node.origin,
                                         config.max_conns_per_ip)
                      if config.rate_limits else None)
        # Users held as going offline at their sign-in here (their grace mark was set).
        self._held: set[str] = set()
        self._hub: Hub | None = None
        self._tasks: set[asyncio.Future[Any]] = set()
        # user → the count of its last session here going out, while under way: the
        # grace's end is asked after it (Redis must not find that session still there).
        self._downs: dict[str, asyncio.Future[Any]] = {}
        # Users a 'gone' is held back for: they come back on another node (comeback.py).
        self.comebacks = Comebacks(presence, self._tell_gone)

    async def start(self, hub: Hub) -> None:
        """Listen to what the other nodes tell (the node holds its id by now:
        ``Presence.start``)."""
        node = self._node
        self._hub = hub
        self.limits = ClusterLimits(node.broker.batcher, hub.admission,
                                    self.presence.sessions.__getitem__)
        hub.presence.confirm_offline = self._confirm_offline
        self.presence.on_back = self._announce_back
        broker = node.broker
        if self.conns is not None:
            # While Redis counts this subscription, this node's per-address counts stand
            # (before the node listens: it has counted nothing yet). What other nodes
            # released of them while it looked gone is counted again when it is back.
            await broker.listen(self.conns.life_channel, _nothing)
            self.presence.on_rejoined = broker.on_resubscribed = self.conns.restore
        await broker.listen(keys.PRESENCE_CHANNEL, self._on_change)
        await broker.listen(keys.PRESENCE_FRAMES, self._on_frame)
        await broker.listen(keys.PRESENCE_SPREAD, self.limits.on_spread)

    def _handler(self) -> PresenceHandler:
        assert self._hub is not None
        return self._hub.presence

    def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        self.comebacks.close()
        if self.conns is not None:
            self.conns.close()

    # --- a sign-in ----------------------------------------------------------------------

    async def before_sign_in(self, name: str, ip: str | None) -> None:
        """Before a hello of ``name`` from ``ip`` is answered: whether the user is within
        the grace of a sign-out elsewhere, whether another node holds them (limits), and
        for a new handle the address's sign-up count."""
        node = self._node
        assert node.world is not None and self.limits is not None
        user = node.world.users.get(name)
        if user is None:
            if self._may_sign_up(name):
                await self.limits.before_sign_up(ip or "")
            return
        grace, spread = await asyncio.gather(self.presence.in_grace(name),
                                             self.presence.spread(name))
        if spread:
            self.limits.mark_spread(name)
            # The node(s) holding the user hand their counts to Redis on this, before
            # the welcome here most likely (the presence script says it again later).
            node.broker.publish(keys.PRESENCE_SPREAD, b"many " + name.encode()
                                ).add_done_callback(_quiet_failure)
        if (grace or spread) and not user.sessions:
            # Watchers see the user online (or within the grace) already: a first
            # session here is news only if what they see changes. (Decided on what
            # Redis held a moment ago: ``_session_up`` corrects it if that changed.)
            self._handler().hold_offline(user)
            self._held.add(name)

    def _may_sign_up(self, name: str) -> bool:
        """Whether a hello for the unknown ``name`` is a sign-up the address's count is
        charged for (the checks ``SignInHandler.sign_in`` makes before it charges)."""
        world = self._node.world
        assert world is not None and self._hub is not None
        if name in world.reserved or name in self._hub.signin.signing_up:
            return False
        try:
            world.admission.check_new_handle(name)
        except ProtocolError:
            return False
        return True

    def session_up(self, user: User) -> None:
        self._spawn(self._session_up(user))

    async def _session_up(self, user: User) -> None:
        counted = await self.presence.count(user.name, 1)
        held = user.name in self._held
        self._held.discard(user.name)
        if counted.nodes > 1 and self.limits is not None:
            self.limits.mark_spread(user.name)
        if held and counted.changed and not counted.back and user.sessions \
                and user.record.status != Status.INVISIBLE:
            # Its return here was held back as a return within the grace, but the node
            # that ended the grace told watchers "offline" first.
            self._handler().broadcast(user, own=False)

    # --- a sign-out -------------------------------------------------------------------

    def session_down(self, user: User) -> None:
        down = self._spawn(self._session_down(user))
        self._downs[user.name] = down
        down.add_done_callback(lambda _, name=user.name: self._down_done(name, down))
        if self.limits is not None and not user.sessions:
            self.limits.forget(user.name)

    def _down_done(self, name: str, down: asyncio.Future[Any]) -> None:
        if self._downs.get(name) is down:
            del self._downs[name]

    async def _session_down(self, user: User) -> None:
        went_offline = await self.presence.session_down(user.name)
        if user.sessions:
            return
        # Whether another node holds the user decides what watchers are told when the
        # presence grace ends (PresenceHandler._gone_offline reads ``User.online``).
        user.remote = not went_offline

    def _confirm_offline(self, user: User) -> None:
        """The grace of ``user``'s sign-out ended here (or a hold of a sign-in that did
        not happen): tell watchers if Redis agrees (the user did not come back on
        another node, and no other node told them)."""
        self._held.discard(user.name)
        self._spawn(self._end_grace(user))

    async def _end_grace(self, user: User) -> None:
        down = self._downs.get(user.name)
        if down is not None:
            await asyncio.wait({down})
        if self.presence.grace <= 0:
            # No grace, no mark: the count of the last session out said whether the user
            # went offline cluster-wide (``User.remote``), one round trip sooner.
            if not user.online:
                self._handler().gone_offline(user)
            return
        try:
            tell = await self.presence.end_grace(user.name)
        except ClusterError as exc:  # out of reach: this node's view decides
            log.debug("ending %s's presence grace without Redis: %s", user.name, exc)
            tell = not user.online
        if tell:
            user.remote = False  # Redis says no node holds the user
            self._handler().gone_offline(user)

    # --- what the other nodes tell -----------------------------------------------------

    def _on_change(self, data: bytes) -> None:
        """``on <user>`` / ``off <user>``: the user's first session in the cluster
        started, or its last one ended (its node's, or its node expired)."""
        op, _, name = data.partition(b" ")
        node = self._node
        assert node.world is not None
        user = node.world.users.get(name.decode())
        if user is None:
            return
        if op == b"on":
            self.comebacks.back(user.name)
            if not user.sessions:
                user.remote = True
                self._handler().back_elsewhere(user)
        elif op == b"off":
            user.remote = False
            if not user.sessions and self._node.config.presence_grace > 0:
                # Its grace runs here too: if its node's timer cannot end it (that node
                # stopped within it), this one's does; Redis lets one of them tell
                # "offline" (``_end_grace``), and a return or that one's frame ends it.
                # The AI contacts' hold has no timer: the next lease holder signs them
                # in, maybe later than the grace, and their watchers are told nothing.
                self._handler().hold_offline(
                    user, timed=not self.comebacks.expects(user.name))
        elif op == b"gone" and not self.comebacks.hold(user):
            self._tell_gone(user)

    def _tell_gone(self, user: User) -> None:
        """The user's node died or left: nobody signed the user out, so no node told the
        watchers. Each node tells its own, as the user's node would have."""
        user.remote = False
        self._handler().drop_hold(user.name)
        if not user.sessions and user.record.status != Status.INVISIBLE:
            node = self._node
            assert node.delivery is not None
            node.delivery.presence_relayed(
                user, self._handler().frame(user, user.status_for(None)))

    def _announce_back(self, names: list[str]) -> None:
        """Users this node holds whom the cluster had counted offline: the node was
        reaped while alive (its heartbeats late, or Redis out of reach for longer than
        ``presence_expiry``) and every other node told its watchers they went. Told
        again that they are here, as at their sign-in, or they would look offline to
        everyone elsewhere until they signed in again."""
        world = self._node.world
        if world is None or self._hub is None:
            return
        handler = self._handler()
        for name in names:
            user = world.users.get(name)
            if user is None or not user.sessions or user.record.status == Status.INVISIBLE:
                continue
            self.send(name, handler.frame(user, user.status_for(None)))

    def _on_frame(self, data: bytes) -> None:
        origin, _, rest = data.partition(b" ")
        name, _, frame = rest.partition(b" ")
        node = self._node
        if origin.decode() == node.origin or not frame:
            return
        assert node.world is not None and node.delivery is not None
        user = node.world.users.get(name.decode())
        if user is None:
            return
        if not user.sessions and not user.remote and _shows_online(frame):
            user.remote = True  # told before the user's "on" reaches this node
        elif not user.sessions and not _shows_online(frame):
            self._handler().drop_hold(user.name)  # its grace was told from another node
        node.delivery.presence_relayed(user, frame)

    def send(self, name: str, frame: bytes) -> None:
        """A presence frame of ``name`` to the watchers on every other node."""
        node = self._node
        data = b"%s %s %s" % (node.origin.encode(), name.encode(), frame)
        node.broker.publish(keys.PRESENCE_FRAMES, data).add_done_callback(_quiet_failure)

    def _spawn(self, work: Any) -> asyncio.Future[Any]:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Future[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.log(level(task.exception()), "cluster presence: %s", task.exception())


def _shows_online(frame: bytes) -> bool:
    try:
        status = msgpack.unpackb(frame).get("status")
    except Exception:
        return False
    return isinstance(status, str) and status != Status.OFFLINE


def _nothing(data: bytes) -> None:
    """Nothing is published on a life channel: it is there to be subscribed."""


def _quiet_failure(future: asyncio.Future[Any]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.debug("a frame for another node was not sent: %s", future.exception())
