"""The live state every domain module reads: users, rooms, who lists whom.

One ``World`` per server, built from the store's snapshot at start-up (``load``) and
changed only by the domain modules, on the event loop, without awaiting.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Iterable
from typing import Protocol

from cfm_common import rules
from cfm_common.errors import ProtocolError
from cfm_common.frames import StoredMsg
from cfm_common.rules import ErrorCode
from cfm_server.admission import Admission
from cfm_server.config import ServerConfig
from cfm_server.domain.durable import Unsettled
from cfm_server.domain.ports import Connection
from cfm_server.domain.writes import Writes
from cfm_server.metrics import Metrics
from cfm_server.pages import MessageReads, Slice
from cfm_server.state import Room, User
from cfm_server.store import ContactRecord, RoomRecord, Store, UserRecord

log = logging.getLogger(__name__)


class Snapshot(Protocol):
    """What ``World.load`` reads: the store's start-up snapshot, or a cluster node's."""

    def load_users(self) -> Iterable[UserRecord]: ...
    def load_rooms(self) -> Iterable[RoomRecord]: ...
    def load_members(self) -> Iterable[tuple[str, str]]: ...
    def load_contacts(self) -> Iterable[ContactRecord]: ...
    def load_reads(self) -> Iterable[tuple[str, str, int]]: ...


class Reads(MessageReads, Protocol):
    """Where answers read what the live state does not hold (``pages.awaited``): a
    single node's store answers at once; a cluster node may still be reading (a future).

    ``top(room)``: the last seq a joiner is shown; messages after it reach a member by
    fan-out. ``history_after``/``history_before``: stored messages (``MessageReads``).
    """

    def top(self, room: Room) -> int | asyncio.Future[int]: ...

    def history_slice(self, room: str, *, after: int | None, before: int | None, limit: int,
                      budget: int) -> Slice | asyncio.Future[Slice]:
        """As ``history_after`` (``after`` given) or ``history_before``, for a page of
        ``budget`` bytes: the read may leave out the messages past the first ones that
        fill the budget, as long as it keeps every message a page cut by
        ``stored_msg_size`` (``first_within`` / ``last_within``) would hold, and then
        says where it stopped (``Slice.stopped``). What a page holds is decided by the
        page (``MessageHandler._history_page``), not here. A store's rows come at once
        and it never stops; a cluster node's read.lua does, so a page of long messages
        is not read whole from Redis to be cut on the node."""
        ...

    def get_message(self, room: str, seq: int
                    ) -> StoredMsg | asyncio.Future[StoredMsg | None] | None:
        """One message in its current state (a change's target, a reply's message)."""
        ...

    def unread_counts(self, user: str, room: str, after: int, cap: int) -> tuple[int, int]:
        """A welcome's unread and mention counts for one room, at once (a cluster node
        reads them before the sign-in is answered). Raises StoreError."""
        ...


class StoreReads:
    """A single node's reads: its store's, at once; a room's top is its last committed
    seq (see RoomHandler.join)."""

    __slots__ = ("get_message", "history_after", "history_before", "unread_counts")

    def __init__(self, store: Store) -> None:
        self.history_after = store.history_after
        self.history_before = store.history_before
        self.get_message = store.get_message
        self.unread_counts = store.unread_counts

    @staticmethod
    def top(room: Room) -> int:
        return room.durable_seq

    def history_slice(self, room: str, *, after: int | None, before: int | None, limit: int,
                      budget: int) -> Slice:
        """The store's rows, whole (``budget`` unused): a local read of them is cheap,
        and the page cuts them."""
        if after is not None:
            return Slice(self.history_after(room, after, limit))
        return Slice(self.history_before(room, before, limit))


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def new_epoch() -> str:
    return secrets.token_hex(8)


class World:
    def __init__(self, config: ServerConfig, store: Store, metrics: Metrics,
                 writes: Writes | None = None, reads: Reads | None = None) -> None:
        self.config = config
        self.store = store  # reads; writes go through ``writes``
        self.writes = writes if writes is not None else Writes(store)
        # The reads of answers (history, a join's top and replay).
        self.reads: Reads = reads if reads is not None else StoreReads(store)
        self.metrics = metrics
        # Record writes not durable yet: what to put back if they fail (durable.py).
        self.unsettled = Unsettled()
        self.users: dict[str, User] = {}
        self.rooms: dict[str, Room] = {}
        # owner names per listed handle: who gets a handle's presence via their contact list.
        self.listed_by: dict[str, set[str]] = {}
        self.reserved = frozenset(rules.normalize_name(n) for n in config.reserved_names)
        # Look-alike names, sign-ups per address, per-user buckets; the server's bots.
        self.admission = Admission(config, self.reserved)

    def user_of(self, session: Connection) -> User:
        user = session.user
        if user is None:  # the session layer only hands over frames after welcome
            raise ProtocolError(ErrorCode.HELLO_REQUIRED, "send hello first")
        return user

    def group_rooms(self, user: User) -> Iterable[Room]:
        rooms = self.rooms
        return (rooms[r] for r in user.rooms if not rooms[r].is_dm)

    def create_room(self, name: str) -> Room:
        room = Room(name, 0, new_epoch())
        self.rooms[name] = room
        self.writes.put_room(RoomRecord(name, 0, room.epoch))
        return room

    # --- lasting state: each change made in one place ---------------------------------
    # The handlers call these (and write the change through ``writes``); so does a
    # cluster node for a change another node made (cfm_server/cluster/apply.py).

    def add_membership(self, room: Room, user: User) -> None:
        room.add_member(user.name)
        user.rooms.add(room.name)
        room.here.update(user.sessions)
        if not room.is_dm:  # member and presence fan-out of group rooms
            room.loud.update(s for s in user.sessions if not s.quiet)

    def end_membership(self, room: Room, user: User) -> None:
        room.remove_member(user.name)
        user.rooms.discard(room.name)
        room.here.difference_update(user.sessions)
        room.loud.difference_update(user.sessions)

    # --- sessions: the rooms' ``here`` ---------------------------------------------------

    def session_in(self, user: User, session: Connection) -> None:
        """``session`` of ``user`` signed in here: its rooms' messages reach it."""
        user.sessions.append(session)
        rooms = self.rooms
        for name in user.rooms:
            rooms[name].here.add(session)

    def session_out(self, user: User, session: Connection) -> None:
        """``session`` of ``user`` signed out."""
        user.sessions.remove(session)
        rooms = self.rooms
        for name in user.rooms:
            rooms[name].here.discard(session)

    def set_contact(self, record: ContactRecord) -> None:
        """``record.owner``'s entry for ``record.name`` (none when neither listed nor
        blocked), and who lists whom."""
        owner, name = self.users[record.owner], record.name
        if record.in_list or record.blocked:
            owner.contacts[name] = record
        else:
            owner.contacts.pop(name, None)
        owners = self.listed_by.setdefault(name, set())
        if record.in_list:
            owners.add(owner.name)
        else:
            owners.discard(owner.name)
            if not owners:
                del self.listed_by[name]

    def move_read_mark(self, user: User, room_name: str, seq: int) -> bool:
        """Read marks only move forward: False when ``seq`` is not past the mark."""
        if seq <= user.reads.get(room_name, 0):
            return False
        user.reads[room_name] = seq
        return True

    # --- start-up ----------------------------------------------------------------------

    def load(self, source: Snapshot | None = None) -> None:
        """Build the live state from the store's snapshot (or ``source``: a cluster
        node's, read from Redis); make sure #lobby exists."""
        store = source if source is not None else self.store
        cleaned = 0
        for record in store.load_users():
            self.users[record.name] = User(record)
            cleaned += self._clean_names(record)
        if cleaned:
            log.info("removed invisible characters from %d stored display names or "
                     "personal messages", cleaned)
        for room in store.load_rooms():
            if not room.epoch:  # its messages were kept but its own write was lost
                log.warning("room %s had no record; restored with a new epoch", room.room)
                room.epoch = new_epoch()
                self.writes.put_room(room)
            self.rooms[room.room] = Room(room.room, room.seq, room.epoch)
        for room_name, user_name in store.load_members():
            room, user = self.rooms.get(room_name), self.users.get(user_name)
            if room is not None and user is not None:
                self.add_membership(room, user)
        for contact in store.load_contacts():
            if contact.owner in self.users:
                self.set_contact(contact)
        for user_name, room_name, seq in store.load_reads():
            user = self.users.get(user_name)
            if user is not None:
                user.reads[room_name] = seq
        if rules.LOBBY not in self.rooms:
            self.create_room(rules.LOBBY)

    def _clean_names(self, record: UserRecord) -> bool:
        """Names stored before invisible characters were refused lose them now, so that
        "Alice\u200b" no longer passes for Alice with any client (a blank display falls
        back to the handle)."""
        display = rules.without_hidden(record.display)
        if not display.strip():
            display = ""
        psm = rules.without_hidden(record.psm)
        if (display, psm) == (record.display, record.psm):
            return False
        record.display, record.psm = display, psm
        self.writes.put_user(record)
        return True
