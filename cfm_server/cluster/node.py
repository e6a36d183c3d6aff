"""One node of a cluster: the hub's World kept in step with Redis, and its messages.

    node = ClusterNode(config)                  # config.redis_url, config.node_id
    hub = Hub(config, NodeStore(), metrics, **node.hub_parts())   # nodestore.py
    await node.start(hub)                        # World from the shared records
    ...
    await node.close()

What a single node reads from and writes to its store, a cluster node reads from and
writes to Redis; the domain's rules run unchanged (docs/cluster.md, "A node's live
state"):

- the World is loaded from the shared records (``apply.read_snapshot``), written through
  ``ClusterWrites`` and follows every other node's change (``apply.apply_change``);
- messages are numbered, deduplicated and stored by the append script
  (``ClusterMessages``); the node subscribes to every room one of its signed-in users is
  a member of (and unsubscribes when none is left) and fans each message out to its own
  sessions (``ClusterDelivery.stored``), the node's own messages included, in seq order,
  exactly once;
- answers read the rooms' streams through the broker (``ClusterReads``, the World's
  ``Reads``): a join's ``top`` is where the node's subscription to the room starts;
- frames for one user (``Delivery.to_user``) also reach the user's sessions on other
  nodes (the user's channel, followed while the node holds a session of theirs);
- presence: the node counts its sessions in the cluster's presence (``Presence``, with
  heartbeats and expiry), marks the users online elsewhere (``User.remote``) and relays
  each presence frame to every node, which tells the watchers it holds.

Every call that needs Redis fails with ``ClusterUnavailable`` while it is out of reach;
what a client asked for is then answered ``error{code: "internal", retry_ms}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import secrets
import socket
from collections.abc import Awaitable, Coroutine
from typing import TYPE_CHECKING, Any

from cfm_common.frames import ClientFrame
from cfm_common.rules import CloseCode
from cfm_server.cluster import barrier, keys, records, scripts, startup
from cfm_server.cluster.apply import (
    apply_change,
    apply_moderator,
    learn_rooms,
    read_snapshot,
)
from cfm_server.cluster.broker import Broker
from cfm_server.cluster.delivery import ClusterDelivery
from cfm_server.cluster.errors import ClusterError
from cfm_server.cluster.messages import ClusterMessages
from cfm_server.cluster.nodepresence import NodePresence
from cfm_server.cluster.nodestore import NodeStore
from cfm_server.cluster.outage import level
from cfm_server.cluster.presence import Presence
from cfm_server.cluster.reads import ClusterReads
from cfm_server.cluster.search import ClusterSearch, index_file
from cfm_server.cluster.state import Change, SharedState
from cfm_server.cluster.writes import ClusterWrites
from cfm_server.domain.delivery import Delivery
from cfm_server.domain.removal import drop_dm_rooms, forget_user, tell_removal
from cfm_server.domain.rooms import RoomHandler
from cfm_server.domain.signin import ACCOUNT_REMOVED, TOKEN_REPLACED, end_sessions, opens
from cfm_server.domain.world import World
from cfm_server.state import User

if TYPE_CHECKING:
    from cfm_server.config import ServerConfig
    from cfm_server.hub import Hub

log = logging.getLogger(__name__)


# The flag after a user frame's origin: for the user's loud sessions only.
LOUD_ONLY = "loud"


def default_node_id(config: ServerConfig) -> str:
    """``<hostname>-<port>``: stable across restarts of the same node, which presence
    needs (a restarted node replaces what its previous life registered). With port 0
    (a free one, picked anew at each start) ``<hostname>-<random>``: two such nodes on
    one machine would otherwise share ``<hostname>-0``, and the second be refused."""
    host = "".join(c if c.isascii() and (c.isalnum() or c in "-_.") else "-"
                   for c in socket.gethostname())[:48] or "node"
    return f"{host}-{config.port or secrets.token_hex(3)}"


class ClusterNode:
    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.node_id = config.node_id or default_node_id(config)
        # This process's life of the node: the origin of its messages and user frames,
        # so that what it sent itself is skipped (a restarted node's session ids repeat).
        self.origin = f"{self.node_id}.{secrets.token_hex(3)}"
        self.session_prefix = f"{self.node_id}."  # of its sessions' ids
        self.broker = Broker(config.redis_url, node=self.node_id,
                             on_message=self._on_message, on_reset=self._on_reset,
                             on_lost=self._on_lost,
                             on_user_frame=self._on_user_frame)
        self.state = SharedState(self.broker, self._on_change, self.origin, config.state_log_bytes)
        self.writes = ClusterWrites(self.state, self.broker)
        self.writes.on_epoch = self._epoch_stands
        self.presence = Presence(self.broker.batcher, self.node_id, origin=self.origin,
                                 expiry=config.presence_expiry, grace=config.presence_grace)
        self.present = NodePresence(self, self.presence)  # its grace, limits, relaying
        # Frames answered on state as new as Redis's when they arrived (barrier.py).
        self.barriers = barrier.ReadBarrier(
            self.broker.batcher, applied=lambda: self.state.seq,
            handed_on=self.broker.handed_on, writers_matter=lambda user, dm:
            barrier.writers_matter(self.world, config.rate_limits, user, dm))
        self.world: World | None = None
        self.delivery: ClusterDelivery | None = None
        # This node's search index (cluster/search.py): fed by the rooms it follows.
        self.search = (ClusterSearch(self.broker, config.redis_url,
                                     index_file(config.resolved_data_dir(), self.node_id))
                       if config.search_index else None)
        self._hub: Hub | None = None
        self._present = False  # registered in the cluster's presence
        self._loaded = False
        # Rooms subscribed to (or being): the future gives the seq live delivery starts after.
        self._subs: dict[str, asyncio.Future[int]] = {}
        self._followed: set[str] = set()
        # Hellos being answered, by name (``before_sign_in`` to ``hello_done``): what
        # they followed and subscribed to stays while one may still sign in.
        self._hellos: dict[str, int] = {}
        self._tasks: set[asyncio.Future[Any]] = set()
        # What answers read from Redis (World.reads): history, a join's top, the
        # welcome's unread counts.
        self.reads = ClusterReads(self.broker, self.subscription)

    # --- the hub's parts -----------------------------------------------------------------

    def hub_parts(self) -> dict[str, Any]:
        """What ``Hub`` builds differently on a cluster node."""
        return {"writes": self.writes, "reads": self.reads, "delivery": self._make_delivery,
                "messages": self._make_messages, "node": self}

    def _make_delivery(self, world: World) -> Delivery:
        self.world = world
        self.delivery = ClusterDelivery(world, self)
        return self.delivery

    def _make_messages(self, world: World, delivery: Delivery,
                       rooms: RoomHandler) -> ClusterMessages:
        return ClusterMessages(world, delivery, rooms, self)

    # --- start and stop ------------------------------------------------------------------

    async def start(self, hub: Hub) -> None:
        """Load the hub's World from Redis; from then on follow every change."""
        self._hub = hub
        # "n1.s3": a user's sessions on two nodes have different ids (welcome.session).
        hub.signin.session_prefix = self.session_prefix + "s"
        hub.signin.node = self.node_id  # named in the sign-in and close log lines
        # Is it the Redis cluster mode needs (StartRefused says what to fix)? Waits while
        # Redis is out of reach.
        await startup.check_redis(self.config.redis_url,
                                  allow_eviction=self.config.allow_redis_eviction)
        await self.broker.start()
        # The node id, before anything of the node's is made (its search index file is
        # named by it): NodeIdTaken if a live node holds it. Registered with no sessions,
        # replacing what a previous life left, and beating from now on.
        await self.presence.start()
        self._present = True
        store = hub.world.store
        if self.search is not None and isinstance(store, NodeStore):
            # None if the index cannot start (logged): searches here are refused.
            store.search_index = self.search = await self.search.open()
        hub.load(await read_snapshot(self.state, self.broker))
        self._loaded = True
        # Who is online on other nodes, and from now on every change of it.
        await self.present.start(hub)
        world = self.world
        assert world is not None
        for name in await self.presence.online(list(world.users)) if world.users else ():
            world.users[name].remote = True

    async def close(self) -> None:
        self.present.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        try:
            if self._present:
                await self.presence.close()  # its users with no other node: offline now
        except ClusterError as exc:
            log.warning("leaving the cluster's presence failed (%s): the node's users go "
                        "offline when its heartbeat expires", exc)
        if self.search is not None:
            await self.search.close()
        await self.state.close()
        await self.broker.close()

    def _spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Future[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.log(level(task.exception()), "cluster node: %s", task.exception())

    def unreachable(self) -> bool:
        """Whether Redis is out of reach now (``/readyz``): the last pipeline failed, or
        the pub/sub connection is down (its watchdog notices within seconds)."""
        return self.broker.batcher.down or not self.broker.subscriber.connected

    # --- sessions: what the node follows while it holds them ---------------------------

    def before_sign_in(self, name: str, ip: str | None = None,
                       token: str | None = None) -> Awaitable[None]:
        """Before a hello of ``name`` (from ``ip``, with ``token``) is answered: follow
        the user's frames and subscribe to every room of theirs, so that the welcome's
        seqs are where live delivery starts; the presence grace and limits
        (``NodePresence``). Raises ClusterUnavailable. Held for the hello until
        ``hello_done(name)``."""
        self._hellos[name] = self._hellos.get(name, 0) + 1
        return self._before_sign_in(name, ip, token)

    async def _before_sign_in(self, name: str, ip: str | None, token: str | None) -> None:
        assert self.world is not None
        await self._caught_up()
        user = self.world.users.get(name)
        if user is not None and not opens(user, token):
            # Refused (name_taken, bad_token) whatever this node reads: nothing to read.
            # A wrong token for a user in 200 rooms made the node subscribe to each and
            # count its unread messages in Redis, ~650 Redis commands per hello, with no
            # account needed (tests/cluster/test_hello_follow.py).
            return
        limits = self.present.limits
        if user is not None and limits is not None and await limits.before_sign_in(name):
            return  # over the user's sign-ins (refused by the hub): nothing to read either
        await self.present.before_sign_in(name, ip)
        if name not in self._followed:
            await self.broker.follow_user(name)
            self._followed.add(name)
        user = self.world.users.get(name)
        if user is not None and user.rooms:
            await asyncio.gather(*(self.subscription(room) for room in list(user.rooms)))
            await self.reads.count_unread(self.world, user)

    async def catch_up(self) -> None:
        """Apply every change of the shared records that Redis holds now (a frame named
        something this node does not know yet). Redis out of reach: done at once."""
        with contextlib.suppress(ClusterError):  # the frame's first answer stands
            await self._caught_up()

    async def _caught_up(self) -> None:
        """Wait until this node applied every change of the shared records Redis held a
        moment ago: a user who signed up, or added a contact, on another node and comes
        here next is known here, with that contact (read the cluster's writes). Raises
        ClusterError."""
        await self.barriers.state()

    def barrier(self, user: str, frame: ClientFrame) -> Awaitable[None] | None:
        """What ``frame`` of ``user`` waits for (barrier.py); None: nothing. Never raises."""
        return self.barriers.before(user, frame)

    def write_mark(self) -> object:  # (see written_since)
        return self.state.last_write or barrier.NO_WRITE_YET

    def written_since(self, mark: object) -> asyncio.Future[None] | None:
        """Done once Redis has every change of the shared records asked for since
        ``mark`` (None: none is under way): a frame's answer goes out after it, so that
        what a client saw acked is in Redis when its next frame reaches another node."""
        return barrier.written_since(self.state.last_write, mark)

    def write_room(self) -> Awaitable[None] | None:
        """While more calls wait for Redis than one pipeline should carry, what a session
        waits for before reading its next frame (``Batcher.room``)."""
        return self.broker.batcher.room()

    def after_sign_in(self, user: User) -> None:
        """A session of ``user`` started here: counted in the cluster's presence."""
        self.present.session_up(user)

    def after_sign_out(self, user: User) -> None:
        """A session of ``user`` ended. Once none of theirs is left here, the node stops
        following the user, and every room of theirs no other member here is in."""
        self.present.session_down(user)
        self._let_go(user.name, user)

    def hello_done(self, name: str) -> None:
        """A hello of ``name`` that ``before_sign_in`` prepared for was answered (a
        welcome, or an error: a refused sign-up, a wrong token …) or dropped. One that
        signed nobody in lets go of what it followed: every hello with a new name used
        to leave the node subscribed to that name's channel for good (27,000 channels
        in 10 s of refused sign-ups from one address, never unsubscribed)."""
        left = self._hellos.get(name, 0) - 1
        if left > 0:
            self._hellos[name] = left
            return
        self._hellos.pop(name, None)
        assert self.world is not None
        self._let_go(name, self.world.users.get(name))

    def _let_go(self, name: str, user: User | None) -> None:
        """Stop following ``name`` and its rooms unless a session of theirs is here or
        a hello of theirs is being answered."""
        if (user is not None and user.sessions) or name in self._hellos:
            return
        if name in self._followed:
            self._followed.discard(name)
            self._spawn(self.broker.unfollow_user(name))
        for room_name in list(user.rooms) if user is not None else ():
            self._release(room_name)

    def _release(self, room_name: str) -> None:
        """Unsubscribe from a room no signed-in user here is a member of."""
        assert self.world is not None
        room = self.world.rooms.get(room_name)
        if room_name not in self._subs or room is None:
            return
        users, hellos = self.world.users, self._hellos
        if any(users[name].sessions or name in hellos for name in room.members
               if name in users):
            return
        del self._subs[room_name]
        self._spawn(self._unsubscribe(room_name))

    async def _unsubscribe(self, room_name: str) -> None:
        # Each step below runs at once up to its first wait for Redis (the broker drops
        # the room's tracker, the subscriber the channel) right after the check: a
        # subscription asked for meanwhile is never undone.
        if room_name in self._subs:
            return  # wanted again before this ran
        await self.broker.unsubscribe(room_name)
        if room_name in self._subs:
            return
        await self.broker.unlisten(keys.room_events(room_name))

    def send_room_event(self, room: str, t: str, user: str, frame: bytes) -> None:
        """What ``user`` did in ``room`` (a ``member``, ``presence`` or ``typing`` frame)
        to the other nodes subscribed to it."""
        data = b"%s %s %s %s" % (self.origin.encode(), t.encode(), user.encode(), frame)
        self.broker.publish(keys.room_events(room), data).add_done_callback(_quiet_failure)

    def _on_room_event(self, room_name: str, data: bytes) -> None:
        origin, t, name, frame = data.split(b" ", 3)
        hub, delivery, world = self._hub, self.delivery, self.world
        if origin.decode() == self.origin or hub is None or delivery is None or world is None:
            return
        room = world.rooms.get(room_name)
        if room is None:
            return
        kind, user_name = t.decode(), name.decode()
        if kind == "typing":
            delivery.room_relayed(room, frame, kind, user_name)
            return
        user = world.users.get(user_name)
        if user is None:
            return
        # The domain's audience rules, applied to this node's sessions.
        if kind == "member":
            # The user's own sessions hear of its join by its channel (ClusterDelivery.
            # room_event), and are no longer in the room after a leave.
            own = user.sessions
            audience = [s for s in hub.room_handler.member_audience(room, user)
                        if s not in own]
        elif kind == "presence":
            audience = hub.presence.introduce_audience(room, user)
        else:
            log.error("%s: an unknown room event %r ignored", room_name, kind)
            return
        delivery.to_sessions(audience, frame, kind)

    def send_presence(self, name: str, frame: bytes) -> None:
        """A presence frame of ``name`` to the watchers on every other node."""
        self.present.send(name, frame)

    def subscription(self, room_name: str, since: int | None = None) -> asyncio.Future[int]:
        """Subscribe to a room (once): a future of the seq live delivery starts after."""
        sub = self._subs.get(room_name)
        if sub is not None:
            return sub
        sub = self._subs[room_name] = asyncio.get_running_loop().create_future()
        room = self.world.rooms.get(room_name) if self.world is not None else None
        waiting = self.broker.subscribe(room_name, since=since,  # tracked from now on
                                        epoch=room.epoch if room is not None else None)
        self._spawn(self._subscribed(room_name, waiting, sub))
        self._spawn(self.broker.listen(keys.room_events(room_name),
                                       functools.partial(self._on_room_event, room_name)))
        return sub

    async def _subscribed(self, room_name: str, waiting: Awaitable[Any],
                          sub: asyncio.Future[int]) -> None:
        try:
            head = await waiting
        except BaseException as exc:
            if self._subs.get(room_name) is sub:
                del self._subs[room_name]  # the next asker tries again
            if isinstance(exc, Exception):
                sub.set_exception(exc)
                sub.exception()  # retrieved: a failure nobody waited for is no error
                return
            sub.cancel()
            raise
        assert self.world is not None
        room = self.world.rooms.get(room_name)
        if room is not None:
            if head.epoch and room.epoch and head.epoch != room.epoch:
                # Two nodes making a new room at the same moment (its first joins) is
                # routine; a room that had messages here and another history in Redis
                # (Redis restarted without its data, say) is worth an operator's look.
                log.log(logging.WARNING if room.durable_seq else logging.DEBUG,
                        "%s: epoch %s here, %s in Redis: taking Redis's", room_name,
                        room.epoch, head.epoch)
                room.epoch = head.epoch
                # The seq here may be another history's (higher or lower): Redis's head
                # counts, and so does what this subscription (begun in Redis's epoch)
                # handed on after it meanwhile — a room made on two nodes at once.
                room.seq = room.durable_seq = max(head.seq,
                                                  self.broker.handed_on(room_name) or 0)
            else:
                if head.epoch and not room.epoch:  # a room learned from another node
                    room.epoch = head.epoch
                # Never lower: what the subscription already handed on counts.
                if head.seq > room.durable_seq:
                    room.seq = room.durable_seq = head.seq
            if self.barriers.rooms_waiting:
                self.barriers.delivered_to(room_name, self.broker.handed_on(room_name) or 0)
        if self.search is not None:
            self.search.follow(room_name, head.seq, head.epoch)  # (another epoch: anew)
        sub.set_result(head.seq)

    # --- what Redis tells the node ---------------------------------------------------------

    def _on_message(self, room_name: str, seq: int, origin: str, msg: bytes) -> None:
        if room_name == keys.STATE:
            self.state.deliver(seq, origin, msg)
            return
        world, delivery = self.world, self.delivery
        assert world is not None and delivery is not None
        room = world.rooms.get(room_name)
        if room is None:
            return
        if seq > room.durable_seq:
            room.seq = room.durable_seq = seq
        if self.search is not None:
            self.search.note(room_name, seq)  # indexed by the next pass, off this path
        if room.is_dm and len(room.wrote) < 2 and not origin.endswith(scripts.HIDDEN_SUFFIX):
            barrier.note_writer(room, msg)
        delivery.stored(room, origin, msg)
        if self.barriers.rooms_waiting:
            self.barriers.delivered_to(room_name, seq)

    def _on_reset(self, room_name: str, epoch: str) -> None:
        if room_name == keys.STATE:
            self.state.reset(epoch)
            return
        assert self.world is not None
        room = self.world.rooms.get(room_name)
        if room is not None:
            # Nothing lost when the node knew no message of it (a room made on two nodes
            # at once, the other's epoch standing).
            log.log(logging.WARNING if room.durable_seq else logging.DEBUG,
                    "%s: its history restarted in Redis (epoch %s)", room_name, epoch)
            had_messages = bool(room.durable_seq)
            room.epoch = epoch
            # The new history's seq, where the broker restarted it (0 after a loss, the
            # stream's last entry if only the meta was lost), never the old one's:
            # welcome.rooms and joined would name an old seq under the new epoch.
            room.seq = room.durable_seq = self.broker.handed_on(room_name) or 0
            if had_messages:
                # Its sessions hold the old history's seqs, and nothing live says the
                # epoch changed: resuming (1012) they get the new one as a reset.
                for session in list(room.here):
                    session.close(CloseCode.SERVICE_RESTART,
                                  "the room's history restarted: reconnect")
        if self.search is not None:
            self.search.forget(room_name)

    def _on_lost(self, room_name: str) -> None:
        """Seqs of a room this node missed are gone from its stream (retention's trim: a
        room's are skipped, as a client's history shows them gone); the records' log's
        are in the snapshot."""
        if room_name == keys.STATE:
            self.state.lost()

    def _on_change(self, change: Change) -> None:
        self.barriers.applied_to(self.state.seq)
        if not self._loaded:
            return  # the snapshot being loaded holds it
        world = self.world
        assert world is not None
        kind, _, rest = change.key.partition(":")
        if kind == records.USER:
            self._user_changed(world, rest, change)
            return
        unknown = apply_change(world, change)
        if kind == records.MODERATOR and self._hub is not None:
            apply_moderator(self._hub.changes, change)
        if kind == records.MEMBER and change.value is None:
            self._release(rest.rpartition(":")[0])  # a member here left, maybe the last
        elif kind == records.MEMBER:
            room_name, _, user_name = rest.rpartition(":")
            user = world.users.get(user_name)
            room = world.rooms.get(room_name)
            if user is not None and user.sessions and room is not None:
                # A member signed in here: its messages from now on — from the start for
                # a room this node did not know (a new DM's first message may be stored
                # already), else from what the node has.
                since = 0 if room_name in unknown else room.durable_seq
                self.subscription(room_name, since)
                unknown.discard(room_name)
        if unknown:  # rooms made on another node: their seq and epoch from Redis
            self._spawn(learn_rooms(world, self.broker, unknown))

    def _user_changed(self, world: World, name: str, change: Change) -> None:
        """A user made, changed or removed (by any node, or ``cfm admin --redis``): a
        token replaced under the user's sessions here, or the account removed, closes
        them (4003), as a single node's control socket does; a removal is told to the
        sessions here that could see the user (domain/removal.py)."""
        if change.value is None:
            held, hub = world.users.get(name), self._hub
            if held is not None and hub is not None:  # every node tells its own sessions
                tell_removal(world, hub.delivery, hub.presence, held)
            user, rooms = forget_user(world, name)
            for room_name in rooms:
                self._release(room_name)
            drop_dm_rooms(world, rooms)
            if user is not None:
                end_sessions(user, ACCOUNT_REMOVED)
            return
        held = world.users.get(name)
        token = held.record.token_hash if held is not None else None
        apply_change(world, change)
        if held is not None and held.record.token_hash != token:
            end_sessions(held, TOKEN_REPLACED)

    def _epoch_stands(self, room_name: str, epoch: str) -> None:
        assert self.world is not None
        room = self.world.rooms.get(room_name)
        if room is not None:
            room.epoch = epoch

    def _on_user_frame(self, user_name: str, origin: str, frame: bytes) -> None:
        origin, _, flag = origin.partition("/")
        if origin == self.origin:
            return  # delivered here already
        assert self.world is not None and self.delivery is not None
        user = self.world.users.get(user_name)
        if user is not None and user.sessions:
            self.delivery.relayed(user, frame, loud_only=flag == LOUD_ONLY)

    def send_to_user(self, name: str, frame: bytes, *, loud_only: bool = False) -> None:
        """``frame`` to the user's sessions on other nodes (at most once); ``loud_only``:
        not to quiet sessions (a block's presence for a watcher through a room only)."""
        origin = f"{self.origin}/{LOUD_ONLY}" if loud_only else self.origin
        self.broker.send_to_user(name, frame, origin=origin).add_done_callback(
            _quiet_failure)

    def session_origin(self, session_id: str, hidden: bool) -> str:
        """The origin tag of a message a session of this node sends: who to skip in the
        fan-out, and (``/h``) a DM message hidden from its peer (private blocking)."""
        # The origin names the node already: the session's own part is enough (it is
        # kept with every stored message).
        origin = f"{self.origin}/{session_id.removeprefix(self.session_prefix)}"
        return origin + scripts.HIDDEN_SUFFIX if hidden else origin


def _quiet_failure(future: asyncio.Future[Any]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.debug("a frame for another node was not sent: %s", future.exception())

