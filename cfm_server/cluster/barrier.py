"""Read barriers: a frame is answered on state at least as new as Redis held when the
frame arrived (issue 12: "a client must not be able to tell which node it is on").

A change acked on one node (a block, a contact added, a join, a sign-up) reaches the
other nodes through the shared records' log a moment later. A frame that arrives on
another node in that moment would be answered on the older state: a DM ``say`` to
someone who just blocked the sender delivered in the clear, ``members`` missing a
member, an edit refused because its target has not reached this node yet. So before a
frame whose answer depends on other users' state is handled, the node reads the head
of the log from Redis and waits until it applied that far:

- **one read per loop turn**, shared by every frame that arrived before it went out
  (``state``): any change a client saw acked before it sent its frame was committed
  before the frame reached the node, hence before the read, which the batcher sends
  after the turn. It rides in the turn's pipeline (one ``HMGET`` of the ``{state}``
  meta, one slot on a Redis Cluster), and the log is usually applied already, so the
  frame waits for one round trip and nothing else;
- **a room's stream** for a frame that names a seq of it (an edit, delete or reaction's
  target, a reply's message; a DM the sender's peer may have written in just now, when
  that decides the answer, ``writers_matter``): the room's head is read, and if Redis
  has the seq while this node has not handed it on yet, the frame waits until the
  room's subscription has (``Broker.handed_on``).

The other half is in the session (``Hub.written_since``): what a frame changed in the
shared records is in Redis before the frame's answers go out, so that "acked" means
"there for every node's barrier".

Which frames wait is :func:`needs_barrier`'s rule: a frame waits when its answer reads
something another user may have just changed. A ``say``, ``typing``, ``read`` or
``nudge`` in a group room does not (a group room's say is stored for its members
whatever they did a moment ago, and only the sender's own membership decides whether
it may; a membership made on another node a moment ago is caught up on the
``not_member`` refusal, ``Hub.catch_up``), nor does ``history`` (read from Redis) or
``leave``: the group-room message path, the hot one, costs no extra round trip. A
``say`` mentioning someone (``@``) or answering a message does wait.

Redis out of reach, or the log not applied within ``CATCH_UP_TIMEOUT``: the frame is
handled on what the node has (a write it makes fails on its own, retryably).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import msgpack

from cfm_common import rules
from cfm_common.frames import (
    ClientFrame,
    Delete,
    Edit,
    GetHistory,
    Leave,
    MarkRead,
    Nudge,
    React,
    Say,
    SendTyping,
    Unreact,
)
from cfm_server.cluster import keys
from cfm_server.cluster.batcher import Batcher
from cfm_server.cluster.errors import ClusterError, ClusterUnavailable
from cfm_server.domain.world import World
from cfm_server.state import Room

log = logging.getLogger(__name__)

CATCH_UP_TIMEOUT = 5.0  # seconds a frame (or a sign-in) waits for this node to catch up

# Frames answered without a barrier wherever they go (see the module's docstring).
_FREE: frozenset[type[Any]] = frozenset({GetHistory, Leave})
# Frames free in a group room only.
_FREE_IN_GROUP: frozenset[type[Any]] = frozenset({SendTyping, MarkRead})


def _is_dm(room: str | None) -> bool:
    return room is None or room.startswith(rules.DM_PREFIX)  # None: a ``to``


def needs_barrier(frame: ClientFrame) -> bool:
    """Whether ``frame``'s answer may read what another user changed a moment ago."""
    kind = type(frame)
    if kind is Say:
        return _is_dm(frame.room) or frame.reply is not None or "@" in frame.text  # type: ignore[union-attr]
    if kind in _FREE:
        return False
    if kind in _FREE_IN_GROUP:
        return _is_dm(frame.room)  # type: ignore[union-attr]
    return True


def target_of(user: str, frame: ClientFrame) -> tuple[str, int] | None:
    """The (room, seq) a frame names whose message this node may not have yet: a
    change's target, a reply's message; a DM's latest (seq 0: "whatever Redis has",
    so that who wrote first in it is known here, ``Room.wrote``)."""
    kind = type(frame)
    if kind is Edit or kind is Delete or kind is React or kind is Unreact:
        return frame.room, frame.target  # type: ignore[union-attr]
    if kind is Say or kind is Nudge:
        to = frame.to  # type: ignore[union-attr]
        room = rules.dm_room(user, rules.normalize_name(to)) if to else frame.room  # type: ignore[union-attr]
        if room is None:
            return None
        reply = frame.reply if kind is Say else None  # type: ignore[union-attr]
        if reply is not None:
            return room, reply
        return (room, 0) if room.startswith(rules.DM_PREFIX) else None
    return None


def writers_matter(world: World | None, rate_limits: bool, user: str, dm: str) -> bool:
    """Whether the peer's having written in ``dm`` may decide the answer to ``user``'s
    say: the stranger bucket (``Admission.charge_message``) holds back a say to a peer
    who has not listed the user, unless the peer wrote first."""
    room = world.rooms.get(dm) if world is not None else None
    if not rate_limits or room is None or world is None:
        return rate_limits  # a room not known yet: read once it is
    peer = next((world.users.get(n) for n in room.members if n != user), None)
    if peer is None or peer.name in room.wrote:
        return False
    listing = peer.contacts.get(user)
    return listing is None or not listing.in_list


def note_writer(room: Room, msg: bytes) -> None:
    """Who wrote in a DM (``Room.wrote``), noted by every node the message reaches, not
    only the one that stored it: an answer to someone who wrote first is no stranger's
    message wherever it is sent from (the DM's ``say`` waits for the room, ``room``)."""
    try:
        sender = msgpack.unpackb(msg).get("from")  # (the whole frame is not needed)
    except Exception:
        return
    if isinstance(sender, str):
        room.wrote.add(sender)


NO_WRITE_YET = object()  # a write mark before the node's first write


def written_since(last: asyncio.Future[Any] | None, mark: object
                  ) -> asyncio.Future[None] | None:
    """A future done (never failed) once ``last``, the shared records' latest change
    asked for, is answered; None if it is ``mark`` (asked for before) or done. Changes
    are answered in the order they were asked for, so the latest covers the others."""
    if last is None or last is mark or last.done():
        return None  # (``mark`` may be NO_WRITE_YET: any write is then news)
    gate = asyncio.get_running_loop().create_future()

    def open_gate(_: object) -> None:
        if not gate.done():
            gate.set_result(None)

    last.add_done_callback(open_gate)
    return gate


def _seq_of(reply: list[Any]) -> int:
    return int(reply[0]) if reply and reply[0] is not None else 0


class ReadBarrier:
    """The barriers of one node.

        barrier = ReadBarrier(batcher, applied=lambda: state.seq,
                              handed_on=broker.handed_on, writers_matter=...)
        await barrier.before(user, frame)  # what a frame waits for (None: nothing)
        await barrier.state()          # the shared records' log applied as far as Redis's
        await barrier.room("#x", 12)   # seq 12 of #x delivered here, if Redis has it
        barrier.applied_to(seq)        # the node applied the log up to ``seq``
        barrier.delivered_to(room, seq)
    """

    def __init__(self, batcher: Batcher, *, applied: Callable[[], int],
                 handed_on: Callable[[str], int | None],
                 writers_matter: Callable[[str, str], bool]) -> None:
        self._batcher = batcher
        self._applied = applied  # the last change of the shared records applied here
        # A room's last seq delivered here (None: not subscribed): ``Broker.handed_on``.
        self._handed_on = handed_on
        # (user, DM): whether the peer's having written in it can change the answer to
        # the user's say (``ClusterNode._writers_matter``); if not, no room read.
        self._writers_matter = writers_matter
        self._turn: asyncio.Future[None] | None = None  # this loop turn's state barrier
        self._state_waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._room_waiters: dict[str, list[tuple[int, asyncio.Future[None]]]] = {}
        self.reads = 0  # head reads of the shared records' log (tests, measurements)

    def before(self, user: str, frame: ClientFrame) -> Awaitable[None] | None:
        """What ``frame`` of ``user`` waits for; None: nothing (``needs_barrier``).
        Never raises: a frame whose barrier failed is answered on what the node has."""
        if not needs_barrier(frame):
            return None
        target = target_of(user, frame)
        if target is not None and not target[1] and not self._writers_matter(user, target[0]):
            target = None
        # A room followed already is read in the same pipeline as the records' head.
        early = self.room(*target) if target is not None else None
        return self._pass(target, early)

    async def _pass(self, target: tuple[str, int] | None,
                    early: Awaitable[None] | None) -> None:
        try:
            await self.state()
            if early is None and target is not None:
                early = self.room(*target)  # a room made meanwhile is known now
            if early is not None:
                await early
        except ClusterError:
            pass  # Redis out of reach: the frame's own reads and writes fail retryably
        except Exception:
            log.exception("a read barrier failed: the frame is answered without it")

    # --- the shared records' log -----------------------------------------------------

    def state(self) -> asyncio.Future[None]:
        """Done once this node applied every change Redis held when the future was made
        (shared by every caller until the read goes out)."""
        turn = self._turn
        if turn is None or turn.done():
            loop = asyncio.get_running_loop()
            turn = self._turn = loop.create_future()
            # After this turn, a new frame needs a new read: the one queued now may be
            # on its way to Redis by then.
            loop.call_soon(self._end_turn, turn)
            self.reads += 1
            head = self._batcher.call("HMGET", keys.room_meta(keys.STATE), "seq", "epoch",
                                      convert=_seq_of)
            head.add_done_callback(lambda read: self._state_read(turn, read))
        return turn

    def _end_turn(self, turn: asyncio.Future[None]) -> None:
        if self._turn is turn:
            self._turn = None

    def _state_read(self, turn: asyncio.Future[None], read: asyncio.Future[int]) -> None:
        if turn.done():
            return
        if read.cancelled():  # the engine is closing
            turn.set_exception(ClusterUnavailable("the cluster engine is closing", 1000))
            return
        exc = read.exception()
        if exc is not None:  # a frame is then answered on what the node has (Node.barrier)
            turn.set_exception(exc)
            return
        seq = read.result()
        if self._applied() >= seq:
            turn.set_result(None)
            return
        self._state_waiters.append((seq, turn))
        self._time_out(turn, f"the shared records' log at seq {seq}")

    def applied_to(self, seq: int) -> None:
        """The node applied the shared records' log up to ``seq``."""
        if self._state_waiters:
            self._state_waiters = _release(self._state_waiters, seq)

    # --- a room's stream ----------------------------------------------------------------

    def room(self, room: str, seq: int) -> Awaitable[None] | None:
        """None when this node has delivered ``room`` up to ``seq`` already (or does not
        follow the room: its frame is refused or handled without it); else a future,
        done once the room's subscription delivered what Redis holds up to ``seq``
        (seq 0: up to the room's head, for who wrote in a DM)."""
        have = self._handed_on(room)
        if have is None or (seq and have >= seq):
            return None
        done = asyncio.get_running_loop().create_future()
        head = self._batcher.call("HMGET", keys.room_meta(room), "seq", "epoch",
                                  convert=_seq_of)
        head.add_done_callback(lambda read: self._room_read(room, seq, done, read))
        return done

    def _room_read(self, room: str, seq: int, done: asyncio.Future[None],
                   read: asyncio.Future[int]) -> None:
        if read.cancelled() or read.exception() is not None:
            done.set_result(None)
            return
        head = read.result()
        target = min(seq, head) if seq else head
        have = self._handed_on(room)
        if have is None or have >= target:
            done.set_result(None)
            return
        self._room_waiters.setdefault(room, []).append((target, done))
        self._time_out(done, f"{room} at seq {target}")

    @property
    def rooms_waiting(self) -> bool:
        return bool(self._room_waiters)

    def delivered_to(self, room: str, seq: int) -> None:
        """The node delivered ``room`` up to ``seq`` (call only while rooms_waiting)."""
        waiters = self._room_waiters.get(room)
        if waiters is None:
            return
        waiting = _release(waiters, seq)
        if waiting:
            self._room_waiters[room] = waiting
        else:
            del self._room_waiters[room]

    # ---------------------------------------------------------------------------------------

    def _time_out(self, waiter: asyncio.Future[None], what: str) -> None:
        def expire() -> None:
            if not waiter.done():
                log.warning("not caught up with %s after %.0f s: answering on what this "
                            "node has", what, CATCH_UP_TIMEOUT)
                waiter.set_result(None)

        handle = asyncio.get_running_loop().call_later(CATCH_UP_TIMEOUT, expire)
        waiter.add_done_callback(lambda _: handle.cancel())


def _release(waiters: list[tuple[int, asyncio.Future[None]]], seq: int
             ) -> list[tuple[int, asyncio.Future[None]]]:
    """Wake every waiter whose target ``seq`` reached; the ones still waiting."""
    waiting = []
    for target, waiter in waiters:
        if waiter.done():
            continue
        if target <= seq:
            waiter.set_result(None)
        else:
            waiting.append((target, waiter))
    return waiting
