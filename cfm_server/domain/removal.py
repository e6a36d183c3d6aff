"""An account the operator removed (``cfm admin remove-user``): what the users who could
see it are told, with frames they know already (PROTOCOL.md; docs/protocol.md, "A removed
account").

As in MSN, a deleted account goes offline and leaves everyone's list, and a room shows
it leaving:

- ``presence{status: offline}`` to its watchers (``Delivery.watchers``: those the user
  blocked see it offline already), unless it looked offline to everyone (invisible);
- ``member{op: leave}`` in each group room it belonged to, to the room's loud sessions
  (those that hear of members at all). Unlike a leave of the user's own, it goes to
  those it blocked and while it is invisible too: the removal is the operator's doing,
  not a sign of the user's activity, and the membership ends for everyone;
- ``member{op: leave}`` in each direct conversation it had, to the other member's
  sessions (not quiet ones): the DM room is archived where no client can open it, and
  its other member learns that nobody is left to write to (a ``say`` there answers
  ``no_such_user``). A DM room has no leave of its own, so this frame means only that;
- to each user with an entry for it on their list, the echo of that entry going:
  ``contact{op: unblock}`` if they blocked it, then ``contact{op: remove}``, as if they
  had removed it from another session of theirs;
- to each user it had added who has no entry for it (the target of an ``added_you``
  not yet answered), the same ``contact{op: remove}``: the echo of a removal that
  changed nothing on their list, which withdraws the request (accepting it would
  answer ``no_such_user``).

These go to the sessions this server holds, and only to them (``Delivery.to_sessions``,
which no cluster node relays): each node of a cluster applies the removal once, from
the shared records' log, and tells its own sessions, so every session hears it once.
A single node's ``remove-user`` asks the running server through its control socket
(``control.py``), which tells its sessions the same way; the users it concerns who are
not online then, or all of them when it runs while the server is stopped, are told at
their next sign-in (domain/notices.py).
"""

from __future__ import annotations

from collections.abc import Iterable

from cfm_common.codec import encode
from cfm_common.frames import Contact, Member, RosterEntry
from cfm_common.rules import ContactOp, MemberOp, Status
from cfm_server.domain.contacts import entry_keys
from cfm_server.domain.delivery import Delivery
from cfm_server.domain.presence import PresenceHandler
from cfm_server.domain.world import World
from cfm_server.state import User
from cfm_server.store import ContactRecord


def tell_removal(world: World, delivery: Delivery, presence: PresenceHandler,
                 user: User) -> None:
    """Tell this server's sessions that ``user`` is gone. Called before the user is
    forgotten: who watched it, its rooms and its place on lists are read from ``world``.
    The user's own sessions are not told (they are closed with 4003)."""
    record = user.record
    if record.status != Status.INVISIBLE:
        delivery.to_sessions(delivery.watchers(user), presence.frame(user, Status.OFFLINE.value),
                             "presence")
    for room in world.group_rooms(user):
        data = encode(Member(room.name, user.name, MemberOp.LEAVE.value))
        delivery.to_sessions([s for s in room.loud if s.user is not user], data, "member")
    for name in sorted(user.rooms):
        room = world.rooms[name]
        if room.is_dm:  # a DM room keeps no ``loud`` set: its sessions here, not quiet
            data = encode(Member(name, user.name, MemberOp.LEAVE.value))
            delivery.to_sessions([s for s in room.here if s.user is not user and not s.quiet],
                                 data, "member")
    gone = RosterEntry(user.name, record.display, Status.OFFLINE.value, "", record.bot, False)
    for other in world.users.values():
        if not other.sessions or other is user:
            continue
        entry = other.contacts.get(user.name)
        if entry is None and not _asked(user, other.name):
            continue
        if entry is not None and entry.blocked:
            delivery.to_sessions(other.sessions, encode(
                Contact(ContactOp.UNBLOCK.value, **entry_keys(gone))), "contact")
        delivery.to_sessions(other.sessions, encode(
            Contact(ContactOp.REMOVE.value, **entry_keys(gone))), "contact")


def _asked(user: User, name: str) -> bool:
    """Whether ``user`` had ``name`` on its list: an ``added_you`` went to ``name`` (or
    was dropped by a block, and then ``name`` holds an entry for ``user`` anyway)."""
    entry = user.contacts.get(name)
    return entry is not None and entry.in_list


def forget_user(world: World, name: str) -> tuple[User | None, list[str]]:
    """A user the operator removed (``cfm admin remove-user``): gone from ``world``
    with its memberships, its entries on other users' lists, and its direct
    conversations (archived in the store; their other member's membership and read mark
    go too, and the rooms leave ``world`` once nobody holds them: ``drop_dm_rooms``).
    On a cluster the records of those follow in the log; applying them finds nothing
    left to do. Returns the user (its sessions are the caller's to close) and the rooms
    it was in."""
    user = world.users.pop(name, None)
    if user is None:
        return None, []
    rooms = sorted(user.rooms)
    for room_name in rooms:
        room = world.rooms.get(room_name)
        if room is None:
            continue
        world.end_membership(room, user)
        if room.is_dm:
            for other in [world.users[m] for m in room.members if m in world.users]:
                world.end_membership(room, other)
                other.reads.pop(room_name, None)
    for other in world.users.values():
        if name in other.contacts:
            world.set_contact(ContactRecord(other.name, name, False, False))
    world.listed_by.pop(name, None)
    return user, rooms


def drop_dm_rooms(world: World, names: Iterable[str]) -> None:
    """The direct conversations of a removed user leave the node's ``world``: one the
    handle's next holder starts is a new room, with a new epoch."""
    for name in names:
        room = world.rooms.get(name)
        if room is not None and room.is_dm and not room.members:
            del world.rooms[name]
