"""A cluster node's live state follows the shared records: start-up and every change.

``read_snapshot`` gives ``World.load`` what a single node reads from its store: the
shared records (users, memberships, contacts, read marks) and each room's seq and epoch
from its meta key. ``apply_change`` then applies each change another node made to the
node's ``World``, through the same ``World`` methods the domain's handlers use, so no
rule exists twice. It changes state only: the frames a change means for the node's
sessions (``added_you``, ``member``, presence) are the sending node's to decide and
reach them by delivery, not by this. (The exception is a removal by the operator, which
no node sent: each node tells its own sessions, ``ClusterNode._user_changed``.)

A node's own changes come back through the log too; applying one again is harmless,
since each record carries its whole value.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass

from cfm_common import rules
from cfm_server.cluster import records
from cfm_server.cluster.broker import Broker
from cfm_server.cluster.state import Change, SharedState
from cfm_server.domain.changes import ChangeHandler
from cfm_server.domain.removal import forget_user
from cfm_server.domain.world import World
from cfm_server.state import Room, User
from cfm_server.store import ContactRecord, RoomRecord, UserRecord

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Snapshot:
    """``World.load``'s source on a cluster node (the Snapshot protocol of world.py)."""
    shared: records.Records
    rooms: list[RoomRecord]

    def load_users(self) -> Iterable[UserRecord]:
        return self.shared.users.values()

    def load_rooms(self) -> Iterable[RoomRecord]:
        return self.rooms

    def load_members(self) -> Iterable[tuple[str, str]]:
        return self.shared.members

    def load_contacts(self) -> Iterable[ContactRecord]:
        return self.shared.contacts

    def load_reads(self) -> Iterable[tuple[str, str, int]]:
        return self.shared.reads

    def load_moderators(self) -> Iterable[tuple[str, str, bool]]:
        return self.shared.moderators


async def read_snapshot(state: SharedState, broker: Broker) -> Snapshot:
    """Subscribe to the shared records, read them, and read the head of every room they
    name (one pipeline); a room with no epoch yet comes with an empty one, which
    ``World.load`` gives a new epoch."""
    shared = records.parse(await state.load())
    names = sorted({room for room, _ in shared.members} | {rules.LOBBY})
    heads = await asyncio.gather(*(broker.head(name) for name in names))
    rooms = [RoomRecord(name, head.seq, head.epoch or "")
             for name, head in zip(names, heads, strict=True)]
    # A new cluster's #lobby does not exist yet: World.load makes it, as on a new node
    # (an empty epoch is for a room whose record was lost, and is logged as such).
    return Snapshot(shared, [r for r in rooms if r.epoch or r.seq or r.room != rules.LOBBY
                             or any(room == rules.LOBBY for room, _ in shared.members)])


def apply_moderator(changes: ChangeHandler, change: Change) -> None:
    """A moderator named or removed on another node (``o:<room>:<user>``), into the
    ``ChangeHandler``'s sets, as its ``load`` reads them."""
    room, _, name = change.key.partition(":")[2].rpartition(":")
    if change.value is None:
        changes.moderators.get(room, set()).discard(name)
        return
    changes.moderators.setdefault(room, set()).add(name)
    if change.value == b"1":
        changes.creators[room] = name


def apply_change(world: World, change: Change) -> set[str]:
    """Apply one change of the shared records to ``world``; returns the names of rooms
    this node did not know, created here without their seq and epoch (the caller reads
    their heads)."""
    kind, _, _ = change.key.partition(":")
    value = change.value
    try:
        if value is None:
            return _apply_deletion(world, kind, change.key)
        parsed = records.parse({change.key: value})
    except ValueError as exc:
        log.error("shared record #%d not applied: %s", change.seq, exc)
        return set()
    for record in parsed.users.values():
        _put_user(world, record)
    for contact in parsed.contacts:
        if contact.owner in world.users and contact.name in world.users:
            world.set_contact(contact)
    unknown: set[str] = set()
    for room_name, user_name in parsed.members:
        user = world.users.get(user_name)
        if user is None:
            continue
        room = world.rooms.get(room_name)
        if room is None:
            room = world.rooms[room_name] = Room(room_name, 0, "")
            unknown.add(room_name)
        world.add_membership(room, user)
    for user_name, room_name, seq in parsed.reads:
        reader = world.users.get(user_name)
        if reader is not None:
            world.move_read_mark(reader, room_name, seq)
    return unknown


async def learn_rooms(world: World, broker: Broker, names: Iterable[str]) -> None:
    """Rooms ``apply_change`` created without their seq and epoch: read their heads."""
    names = [name for name in names if name in world.rooms]
    heads = await asyncio.gather(*(broker.head(name) for name in names))
    for name, head in zip(names, heads, strict=True):
        room = world.rooms.get(name)
        if room is not None and not room.epoch:
            room.seq = room.durable_seq = max(room.seq, head.seq)
            room.epoch = head.epoch or ""


def _put_user(world: World, record: UserRecord) -> None:
    user = world.users.get(record.name)
    if user is None:
        world.users[record.name] = User(record)
        return
    # Keep the object (sessions hold it); take the fields another node changed.
    for attr in ("token_hash", "display", "psm", "status", "bot"):
        setattr(user.record, attr, getattr(record, attr))


def _apply_deletion(world: World, kind: str, key: str) -> set[str]:
    rest = key.partition(":")[2]
    if kind == records.CONTACT:
        owner, _, name = rest.partition(":")
        if owner in world.users:
            world.set_contact(ContactRecord(owner, name, False, False))
    elif kind == records.MEMBER:
        room_name, _, user_name = rest.rpartition(":")
        room, user = world.rooms.get(room_name), world.users.get(user_name)
        if room is not None and user is not None:
            world.end_membership(room, user)
    elif kind == records.READ:  # the operator removed a user, or a DM (cluster/admin.py)
        user_name, _, room_name = rest.partition(":")
        reader = world.users.get(user_name)
        if reader is not None:
            reader.reads.pop(room_name, None)
    elif kind == records.USER:
        forget_user(world, rest)
    elif kind != records.MODERATOR:  # the node applies those (apply_moderator)
        log.warning("a deleted shared record %r is not applied on a running node", key)
    return set()


