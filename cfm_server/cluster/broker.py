"""The cluster's message engine over one Redis: append, history, head and live delivery.

    broker = Broker("redis://127.0.0.1:6379/0", node="n1", on_message=deliver)
    await broker.start()
    head = await broker.subscribe("#lobby")          # local members joined the room
    done = await broker.append("#lobby", "alice", "c1", "text", "hi", ts, origin="n1/7")
    await broker.history("#lobby", after=0, limit=50)
    await broker.close()

``append`` runs the append script (see ``scripts.py``) through the batcher, so the
appends of one loop turn share one pipeline, one script call and one fsync. Live
messages of subscribed rooms reach ``on_message(room, seq, origin, msg)`` in seq order,
each exactly once, the node's own appends included (``origin`` says whose session sent
it, to skip it): the per-room tracker holds what arrives early and reads what pub/sub
lost from the stream.
``on_reset(room, epoch)`` tells when a room's epoch changed under a subscription.

Every call that needs Redis raises :class:`ClusterUnavailable` while Redis is out of
reach; the broker reconnects by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from cfm_common.frames import StoredMsg
from cfm_server.cluster import keys, rediscluster, scripts
from cfm_server.cluster.batcher import Batcher
from cfm_server.cluster.entries import Read, read_entries, seq_of, stored
from cfm_server.cluster.errors import ClusterError, ClusterUnavailable
from cfm_server.cluster.outage import Outage, level
from cfm_server.cluster.subscriber import Subscriber
from cfm_server.cluster.tracker import Delivery, RoomTracker
from cfm_server.pages import FRAME_SLACK, Slice

log = logging.getLogger(__name__)

# A gap is read from the stream this many messages at a time.
FILL_PAGE = 500
# compact.lua copies a stream this many entries at a time (bounds the script's memory).
COMPACT_PAGE = 1000
# A room's stream is rewritten after a delete at most once in this many seconds (per node).
COMPACT_INTERVAL = 10.0

OnMessage = Callable[[str, int, str, bytes], None]
OnReset = Callable[[str, str], None]
OnUserFrame = Callable[[str, str, bytes], None]


@dataclass(frozen=True, slots=True)
class Head:
    seq: int  # 0: nothing stored yet
    epoch: str | None  # None: the room has no epoch yet (nothing was ever stored)


@dataclass(frozen=True, slots=True)
class Appended:
    seq: int
    ts: int
    epoch: str
    duplicate: bool  # a retry of (sender, id): seq and ts are the original's


def new_epoch() -> str:
    """An epoch to propose for a room that has none (every append proposes one; Redis
    keeps the first): unique, not secret, so not from the system's entropy per call."""
    return f"{_random.getrandbits(64):016x}"


_random = random.Random(secrets.randbits(64))


def redis_client(url: str, connect_timeout: float) -> Redis:
    """A client for the batcher or the subscriber, which bound their waits themselves.

    No socket timeout: the batcher puts one deadline on each pipeline (a per-reply timer
    would cost a fifth of the node's time per append), and the pub/sub connection waits
    for messages indefinitely under its watchdog. No retries inside redis-py: a command
    re-sent after a lost reply could run twice; the callers decide when to try again.
    RESP2: the batcher reads raw replies, whose shapes must not depend on the URL.
    """
    return Redis.from_url(url, socket_timeout=None,
                          socket_connect_timeout=min(connect_timeout, 2.0),
                          retry=Retry(NoBackoff(), 0), decode_responses=False, protocol=2)


class Broker:
    def __init__(
        self,
        url: str,
        *,
        node: str,
        on_message: OnMessage,
        on_reset: OnReset | None = None,
        on_lost: Callable[[str], None] | None = None,
        on_user_frame: OnUserFrame | None = None,
        socket_timeout: float = 5.0,
        ping_interval: float = 2.0,
        ping_timeout: float = 3.0,
        backoff: tuple[float, float] = (0.05, 2.0),
    ) -> None:
        self.node = scripts.check_token(node, "node id")
        self._on_message = on_message
        self._on_reset = on_reset
        self._on_lost = on_lost  # (room): seqs it missed are gone from the stream
        self._on_user_frame = on_user_frame
        self._socket_timeout = socket_timeout
        # A Redis Cluster (redis+cluster://): one pipeline per master (rediscluster.py).
        url, cluster = rediscluster.split_url(url)
        self._client = redis_client(url, socket_timeout)
        # The pub/sub connection waits for messages indefinitely; the watchdog guards it.
        self._pubsub_client = redis_client(url, socket_timeout)
        # The node's one view of whether Redis is reachable (logged once per outage).
        self.outage = Outage(self.node)
        batcher = rediscluster.ClusterBatcher if cluster else Batcher
        self.batcher = batcher(self._client, timeout=socket_timeout, backoff=backoff,
                               outage=self.outage)
        options: dict[str, Any] = dict(ping_interval=ping_interval,
                                       ping_timeout=ping_timeout, backoff=backoff,
                                       outage=self.outage)
        self.subscriber: Subscriber | rediscluster.ShardedSubscriber
        if isinstance(self.batcher, rediscluster.ClusterBatcher):
            self.subscriber = rediscluster.ShardedSubscriber(
                self.batcher, self._pubsub_client, self._on_publish, self._resync, **options)
        else:
            self.subscriber = Subscriber(self._pubsub_client, self._on_publish, self._resync,
                                         **options)
        self._rooms: dict[str, RoomTracker] = {}
        self._channels: dict[bytes, RoomTracker] = {}  # the same, by live channel
        self._fills: dict[str, asyncio.Task[None]] = {}
        self._listeners: dict[bytes, Callable[[bytes], None]] = {}
        self._compacted: dict[str, float] = {}  # room → loop time of its last rewrite
        self._compact_timers: dict[str, asyncio.TimerHandle] = {}
        self.gaps_filled = 0  # gaps read from the streams (a lost publish, a reconnect)
        # Told each time a pub/sub connection's subscriptions are all confirmed again.
        self.on_resubscribed: Callable[[], None] | None = None

    async def start(self) -> None:
        self.subscriber.start()

    async def close(self) -> None:
        for timer in self._compact_timers.values():
            timer.cancel()  # the next delete in the room, on any node, rewrites it
        self._compact_timers.clear()
        for task in list(self._fills.values()):
            task.cancel()
        await asyncio.gather(*self._fills.values(), return_exceptions=True)
        await self.subscriber.close()
        await self.batcher.close()
        for client in (self._client, self._pubsub_client):
            with contextlib.suppress(Exception):
                await client.aclose()

    # --- storing and reading -----------------------------------------------------------

    async def append(self, room: str, sender: str, client_id: str | None, kind: str,
                     text: str, ts: int, *, origin: str | None = None) -> Appended:
        """Store one message: durable (as Redis's fsync policy makes it) when this returns."""
        return await self.submit(room, sender, client_id, kind, text, ts, origin=origin)

    def submit(self, room: str, sender: str, client_id: str | None, kind: str, text: str,
               ts: int, *, origin: str | None = None, extra: dict[str, Any] | None = None,
               tombstone: bytes = b"", epoch: str | None = None) -> asyncio.Future[Appended]:
        """``append`` as a future, for callers that are not coroutines (the hub's frame
        handlers, like the store's commit futures): no task per message.

        ``extra``: the extension keys the entry carries (a reply, mentions; a change
        entry's ``change``, ``target``, ``emoji``). A change entry is applied to its
        target in the same script (append.lua), unless its origin marks it hidden (a
        change sent across a block is stored, not applied; a delete always is); a
        delete gives the target's ``tombstone`` (its msg frame without text).

        ``epoch``: the one to give the room if this append creates it in Redis — the
        node's own for a room it just made (as ``put_room`` proposes), so that the room
        the node answers with and the one Redis keeps are one (a random one otherwise)."""
        origin = scripts.check_token(origin or self.node, "origin")
        head, tail = scripts.msg_parts(room, sender, text, ts, kind, client_id, extra)
        args: list[Any] = [sender, client_id or "", ts, head, tail, epoch or new_epoch(),
                           keys.room_channel(room), origin]
        change = extra.get("change") if extra else None
        if change:
            assert extra is not None
            applied = not origin.endswith(scripts.HIDDEN_SUFFIX) or change == "delete"
            erased = tombstone
            if change == "edit":  # what the entry becomes if its target is deleted
                erased = scripts.msg_parts(room, sender, "", ts, kind, client_id, extra)[1]
            args += [change, extra["target"], int(applied), extra.get("emoji") or "", erased,
                     text]

        def settle(reply: list[Any]) -> Appended:
            seq, stored_ts, epoch, duplicate = reply[:4]
            done = Appended(int(seq), int(stored_ts), epoch.decode(), bool(duplicate))
            if not done.duplicate:
                # Hand it on now if it is next in line; its published copy is then a
                # duplicate. (Runs as the reply is settled, so in seq order.)
                stored_tail = args[12] if len(reply) > 4 and reply[4] else tail
                self._offer(room, done.seq, done.epoch, origin,
                            scripts.msg_bytes(head, done.seq, stored_tail))
                if change == "delete":
                    self.compact(room)
            return done

        return self.batcher.eval_each(  # merged with the loop turn's other appends
            scripts.APPEND,
            [keys.room_meta(room), keys.room_log(room), keys.room_ids(room),
             keys.room_changes(room)],
            args,
            convert=settle,
        )

    def compact(self, room: str) -> None:
        """Rewrite the room's stream so that no byte of a deleted entry is left in Redis
        (compact.lua: XDEL alone leaves them in the stream's nodes, DUMP and RDB). Runs
        after a delete: at once if the room was not rewritten in the last
        ``COMPACT_INTERVAL`` seconds, else once at the end of it for all the deletes
        meanwhile — a rewrite costs Redis time in proportion to the room's stream
        (docs/cluster.md), so deletes in a stream cannot keep Redis busy. A rewrite that
        fails is logged; the room's next delete's covers it."""
        if room in self._compact_timers:
            return  # one is due: it covers this delete too
        loop = asyncio.get_running_loop()
        now = loop.time()
        if len(self._compacted) > 1024:  # forget rooms rewritten long enough ago
            self._compacted = {r: t for r, t in self._compacted.items()
                               if now - t < COMPACT_INTERVAL}
        wait = self._compacted.get(room, now - COMPACT_INTERVAL) + COMPACT_INTERVAL - now
        if wait <= 0:
            self._run_compact(room, now)
        else:
            self._compact_timers[room] = loop.call_later(wait, self._compact_due, room)

    def _compact_due(self, room: str) -> None:
        del self._compact_timers[room]
        self._run_compact(room, asyncio.get_running_loop().time())

    def _run_compact(self, room: str, now: float) -> None:
        self._compacted[room] = now

        def done(future: asyncio.Future[Any]) -> None:
            if not future.cancelled() and future.exception() is not None:
                exc = future.exception()
                log.log(level(exc), "%s: rewriting the stream after a delete failed: %s",
                        room, exc)

        self.batcher.eval(scripts.COMPACT, [keys.room_log(room), keys.room_scratch(room)],
                          [COMPACT_PAGE], convert=int).add_done_callback(done)

    async def head(self, room: str) -> Head:
        return await self.batcher.call("HMGET", keys.room_meta(room), "seq", "epoch",
                                       convert=_head)

    async def history(self, room: str, *, after: int | None = None, before: int | None = None,
                      limit: int) -> list[StoredMsg]:
        """Up to ``limit`` messages just above ``after``, or just below ``before`` (default:
        the newest), in ascending seq."""
        entries, _ = await self._read(room, after=after, before=before, limit=limit)
        return [stored(entry) for entry in entries]

    async def page(self, room: str, *, after: int | None = None, before: int | None = None,
                   limit: int, budget: int) -> Slice:
        """``history`` for a page of ``budget`` bytes: read.lua stops before the message
        that would take what it read over the budget, weighing each one no more than
        ``pages.stored_msg_size`` does (``FRAME_SLACK``), and says where it stopped."""
        entries, stopped = await self._read(room, after=after, before=before, limit=limit,
                                            budget=budget)
        return Slice([stored(entry) for entry in entries], stopped)

    async def _read(self, room: str, *, after: int | None, before: int | None, limit: int,
                    budget: int | None = None) -> Read:
        """Entries as the stream holds them (``m``, ``o``, ``h``), a deleted message's
        from the changes hash, each with the current state of a changed message (``t``,
        ``e``: edited text and time; ``r``: its reactions): read.lua, one atomic read.
        With a ``budget``, also the seq the read stopped at short of ``limit`` (or None)."""
        if limit <= 0:
            return [], None
        if after is not None:
            args: list[Any] = ["after", after, limit]
        elif before is not None and before <= 1:
            return [], None
        else:
            args = ["before", "" if before is None else before, limit]
        if budget is not None:
            args += [budget, FRAME_SLACK]
        return await self.batcher.eval(
            scripts.READ,
            [keys.room_meta(room), keys.room_log(room), keys.room_changes(room)], args,
            convert=read_entries)

    def unread(self, room: str, *, after: int, limit: int, user: str
               ) -> asyncio.Future[tuple[int, int]]:
        """(unread, mentions) of ``user`` in the ``limit`` seqs after ``after``, counted
        in Redis (unread.lua): the messages never leave it."""
        return self.batcher.eval(
            scripts.UNREAD, [keys.room_log(room)], [after, limit, user],
            convert=lambda reply: (int(reply[0]), int(reply[1])))

    # --- live delivery -----------------------------------------------------------------

    def subscribe(self, room: str, *, since: int | None = None, epoch: str | None = None,
                  max_backfill: int = FILL_PAGE) -> Awaitable[Head]:
        """Deliver the room's live messages from now on; the Head returned says from
        where (everything above its seq will be delivered) and in which epoch.
        Idempotent.

        The room is tracked from this call on, before anything is awaited: a message of
        it that this node appends meanwhile is held, not dropped. ``since``: deliver from
        just after that seq rather than from the head, read from the stream like a gap —
        for a room a node learns it must follow after messages were stored in it (a new
        DM made on another node) — unless more than ``max_backfill`` messages lie between.
        ``epoch``: the one the caller knows the room by, taken as the room's while Redis
        holds none (a room just made, or one whose history Redis lost): a first message
        under another epoch is then a restart (``on_reset``), not the room's first.
        """
        tracker = self._rooms.get(room)
        if tracker is None:
            tracker = self._rooms[room] = RoomTracker(room)
            self._channels[keys.room_channel(room).encode()] = tracker
        return self._subscribe(room, tracker, since, epoch, max_backfill)

    async def _subscribe(self, room: str, tracker: RoomTracker, since: int | None,
                         epoch: str | None, max_backfill: int) -> Head:
        try:
            await self.subscriber.subscribe(keys.room_channel(room),
                                            timeout=self._socket_timeout)
            head = await self.head(room)
        except (TimeoutError, ClusterError) as exc:
            await self.unsubscribe(room)
            if isinstance(exc, ClusterUnavailable):
                raise
            raise ClusterUnavailable(f"cannot subscribe to {room}: {exc}", 1000) from exc
        if head.epoch is None and epoch and not tracker.epoch:
            tracker.epoch = epoch  # kept by tracker.head (a head without an epoch)
        if (since is not None and tracker.last is None and since < head.seq
                and head.seq - since <= max_backfill):
            # The stream holds since+1 .. head: a gap to fill, before later messages.
            self._deliver(room, tracker.head(since, head.epoch or ""))
            tracker.target = max(tracker.target, head.seq)
            self._fill_if_gap(tracker)
            return Head(since, head.epoch)
        self._apply_head(tracker, head)
        # Redis's epoch; without one, the caller's or a first message's met meanwhile.
        return Head(head.seq, tracker.epoch or None)

    async def unsubscribe(self, room: str) -> None:
        self._rooms.pop(room, None)
        self._channels.pop(keys.room_channel(room).encode(), None)
        fill = self._fills.pop(room, None)
        if fill is not None:
            fill.cancel()
        await self.subscriber.unsubscribe(keys.room_channel(room))

    @property
    def subscribed(self) -> set[str]:
        return set(self._rooms)

    def handed_on(self, room: str) -> int | None:
        """The last seq of a subscribed room handed to ``on_message`` (or skipped: a
        subscription from the head on); None while not subscribed (read barriers)."""
        tracker = self._rooms.get(room)
        return None if tracker is None else tracker.last or 0

    # --- frames for users' sessions on other nodes -------------------------------------

    async def follow_user(self, user: str) -> None:
        """Receive the frames sent to ``user`` (the node holds a session of theirs) in
        ``on_user_frame(user, origin, frame)``. Idempotent."""
        try:
            await self.subscriber.subscribe(keys.user_channel(user), timeout=self._socket_timeout)
        except TimeoutError as exc:
            raise ClusterUnavailable(f"cannot follow {user}: {exc}", 1000) from exc

    async def unfollow_user(self, user: str) -> None:
        await self.subscriber.unsubscribe(keys.user_channel(user))

    def send_to_user(self, user: str, frame: bytes, *, origin: str | None = None) -> \
            asyncio.Future[Any]:
        """Publish ``frame`` to the nodes that follow ``user``; ``origin`` (this node by
        default) comes with it, so that a node skips what it delivered itself. At most
        once, like pub/sub: for what a session can do without after a reconnect (its
        welcome, a join and history carry the state), not for messages."""
        origin = scripts.check_token(origin or self.node, "origin")
        return self.batcher.call("PUBLISH", keys.user_channel(user),
                                 origin.encode() + b" " + frame)

    # --- other channels -----------------------------------------------------------------

    async def listen(self, channel: str, handler: Callable[[bytes], None]) -> None:
        """Every publish on ``channel`` (neither a room's nor a user's) to ``handler``;
        at most once, like pub/sub. The subscription outlives reconnects."""
        self._listeners[channel.encode()] = handler
        try:
            await self.subscriber.subscribe(channel, timeout=self._socket_timeout)
        except TimeoutError as exc:
            raise ClusterUnavailable(f"cannot listen to {channel}: {exc}", 1000) from exc

    async def unlisten(self, channel: str) -> None:
        self._listeners.pop(channel.encode(), None)
        await self.subscriber.unsubscribe(channel)

    def publish(self, channel: str, data: bytes) -> asyncio.Future[Any]:
        return self.batcher.call("PUBLISH", channel, data)

    def _on_publish(self, channel: bytes, data: bytes) -> None:
        tracker = self._channels.get(channel)
        if tracker is not None:
            self._on_live(tracker, data)
            return
        listener = self._listeners.get(channel)
        if listener is not None:
            try:
                listener(data)
            except Exception:
                log.exception("the listener of %r failed", channel)
            return
        user = keys.user_of_channel(channel)
        if user is not None:
            origin, sep, frame = data.partition(b" ")
            if not sep:
                log.error("ignored a malformed publish on %r", channel)
            elif self._on_user_frame is not None:
                try:
                    self._on_user_frame(user, origin.decode(), frame)
                except Exception:
                    log.exception("on_user_frame failed for %s", user)
            return
        try:
            env = scripts.parse_envelope(data)
        except ValueError:
            log.error("ignored a malformed publish on %r", channel)
            return
        self._offer(keys.room_of_channel(channel), env.seq, env.epoch, env.origin, env.msg)

    def _on_live(self, tracker: RoomTracker, data: bytes) -> None:
        """A published message of a subscribed room (an envelope, ``scripts.envelope``).

        Once per message per node, so the tracker's two common cases are taken here
        without ``offer``'s lists, when nothing is held and no gap known: the next seq
        (handed on), and one at or below the last (this node's own append, handed on when
        Redis answered it: dropped). Anything else (early, another epoch, the head not
        read yet) goes through ``_offer``."""
        try:
            seq_text, epoch_text, origin, msg = data.split(b" ", 3)
            seq = int(seq_text)
        except ValueError:
            log.error("ignored a malformed publish on %r", tracker.room)
            return
        epoch = epoch_text.decode()
        last = tracker.last
        if last is not None and epoch == tracker.epoch and not tracker.held:
            if seq <= last and tracker.target <= last:
                return
            if seq == last + 1 and tracker.target <= seq:
                tracker.last = seq
                try:
                    self._on_message(tracker.room, seq, origin.decode(), msg)
                except Exception:
                    log.exception("on_message failed for %s#%d", tracker.room, seq)
                return
        self._offer(tracker.room, seq, epoch, origin.decode(), msg)

    def offer(self, room: str, seq: int, epoch: str, origin: str, msg: bytes) -> None:
        """Hand on an entry this node wrote to a subscribed room's log, as soon as Redis
        numbered it (its published copy is then a duplicate). For callers that run their
        own script on a room's keys, as the shared records do (state.py)."""
        self._offer(room, seq, epoch, origin, msg)

    def _offer(self, room: str, seq: int, epoch: str, origin: str, msg: bytes) -> None:
        tracker = self._rooms.get(room)
        if tracker is None:
            return
        if not tracker.epoch:
            tracker.epoch = epoch  # the room's first message made its epoch
        elif epoch != tracker.epoch:
            self._restart(tracker, epoch, seq - 1)
        self._deliver(room, tracker.offer(seq, origin, msg))
        self._fill_if_gap(tracker)

    def _apply_head(self, tracker: RoomTracker, head: Head) -> None:
        if head.epoch and tracker.epoch and head.epoch != tracker.epoch:
            self._restart(tracker, head.epoch, head.seq)
        self._deliver(tracker.room, tracker.head(head.seq, head.epoch or ""))
        self._fill_if_gap(tracker)

    def _restart(self, tracker: RoomTracker, epoch: str, last: int) -> None:
        """The room's history was lost or reset under us: live delivery goes on from
        ``last`` in the new epoch; what came before is the hub's to resync (``on_reset``)."""
        log.warning("%s: epoch changed from %s to %s", tracker.room, tracker.epoch, epoch)
        tracker.restart(epoch, last)
        if self._on_reset is not None:
            self._on_reset(tracker.room, epoch)

    def _deliver(self, room: str, deliveries: list[Delivery]) -> None:
        for d in deliveries:
            try:
                self._on_message(room, d.seq, d.origin, d.msg)
            except Exception:
                log.exception("on_message failed for %s#%d", room, d.seq)

    def _fill_if_gap(self, tracker: RoomTracker) -> None:
        room = tracker.room
        if room not in self._fills and tracker.gap() is not None:
            self._fills[room] = asyncio.create_task(self._fill(tracker))

    async def _fill(self, tracker: RoomTracker) -> None:
        """Read the missing seqs from the stream, until the room has no gap."""
        room = tracker.room
        counted = -1  # the gap counted last (its pages share their end)
        try:
            while self._rooms.get(room) is tracker and (gap := tracker.gap()) is not None:
                after, upto = gap
                epoch = tracker.epoch
                try:
                    entries, _ = await self._read(room, after=after, before=None,
                                                  limit=min(upto - after, FILL_PAGE))
                except ClusterUnavailable as exc:
                    await asyncio.sleep(exc.retry_ms / 1000)
                    continue
                if tracker.epoch != epoch:
                    continue  # read from the old epoch's history: not ours to deliver
                if upto != counted:
                    self.gaps_filled += 1
                    counted = upto
                entries = [e for e in entries if seq_of(e) <= upto]
                # Trimmed (retention, the records' log's cap): what is gone is skipped,
                # whatever follows delivered — never read again and again.
                gone = seq_of(entries[0]) - 1 if entries else upto
                if gone > after:
                    log.warning("%s: seqs %d..%d are gone from the stream; skipping them",
                                room, after + 1, gone)
                    self._deliver(room, tracker.skip_to(gone))
                    if self._on_lost is not None:
                        self._on_lost(room)
                    if not entries:
                        continue
                for entry in entries:
                    self._deliver(room, tracker.offer(seq_of(entry), entry[1][b"o"].decode(),
                                                      entry[1][b"m"]))
        except ClusterError:
            log.exception("%s: filling a gap failed", room)
        finally:
            if self._fills.get(room) is asyncio.current_task():
                del self._fills[room]

    async def _resync(self) -> None:
        """After a (re)connect of the pub/sub connection: what did we miss meanwhile?
        Re-read every subscribed room's head (in one pipeline); a gap starts a fill."""
        if self.on_resubscribed is not None:
            self.on_resubscribed()
        rooms = list(self._rooms.values())
        while rooms:
            heads = await asyncio.gather(*(self.head(t.room) for t in rooms),
                                         return_exceptions=True)
            retry: list[RoomTracker] = []
            wait_ms = 0
            for tracker, head in zip(rooms, heads, strict=True):
                if self._rooms.get(tracker.room) is not tracker:
                    continue  # unsubscribed meanwhile
                if isinstance(head, Head) and tracker.last is None:
                    # Its subscribe is under way: that reads the head itself once Redis
                    # confirmed it, and delivery starts where it says (after ``since``:
                    # a new DM's first messages, stored already). This head says only
                    # how far the stream goes: a gap to fill once the start is known.
                    # (Applied here, it skipped those messages: a new master's pub/sub
                    # connection is made by a subscribe, and confirms it.)
                    tracker.target = max(tracker.target, head.seq)
                elif isinstance(head, Head):
                    self._apply_head(tracker, head)
                elif isinstance(head, ClusterUnavailable):
                    retry.append(tracker)
                    wait_ms = max(wait_ms, head.retry_ms)
                else:
                    log.error("%s: reading the head failed: %s", tracker.room, head)
            if retry:
                await asyncio.sleep(wait_ms / 1000)
            rooms = retry


def _head(reply: list[Any]) -> Head:
    seq, epoch = reply
    return Head(int(seq) if seq is not None else 0, epoch.decode() if epoch else None)
