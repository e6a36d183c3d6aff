"""Delivery: the one way bytes reach other users' sessions.

The domain modules decide what is said and to whom (the rules); this module puts the
bytes on the sessions, each frame framed once for all of its recipients, and counts
them. It also knows who watches a user's presence, since that is a routing question
(contact-list owners, and the loud sessions of the user's group rooms). What goes back
to the session that asked (an answer, an ``ack``, an error) is queued on it directly.

Single node: the recipients are the local sessions in ``World``. A cluster broker
plugs in here: ``to_room`` and ``to_user`` publish to the nodes with sessions of the
room or user, and ``presence`` to the nodes of the watchers; each node then runs the
same local delivery for the sessions it holds. No rule moves into this module.
"""

from __future__ import annotations

from collections.abc import Iterable

from cfm_server.domain.ports import Connection
from cfm_server.domain.world import World
from cfm_server.state import Pending, Room, User
from cfm_server.wsframe import frame_binary


class Delivery:
    def __init__(self, world: World) -> None:
        self.world = world
        self.users = world.users
        self.metrics = world.metrics

    def to_sessions(
        self, sessions: Iterable[Connection], data: bytes, t: str, *,
        skip: Connection | None = None,
    ) -> None:
        """The same bytes to each of ``sessions`` (but ``skip``)."""
        framed = frame_binary(data)
        n = 0
        for session in sessions:
            if session is not skip:
                session.send_framed(framed)
                n += 1
        self.metrics.count_out(t, n)

    def to_user(self, user: User, data: bytes, t: str, *,
                skip: Connection | None = None) -> None:
        """The same bytes to every session of ``user`` (but ``skip``)."""
        self.to_sessions(user.sessions, data, t, skip=skip)

    def to_room(
        self,
        room: Room,
        data: bytes,
        t: str,
        *,
        skip: Connection | None = None,
        skip_user: str | None = None,
    ) -> None:
        """The same bytes to every session of every member (but ``skip`` / ``skip_user``):
        the room's sessions here (``Room.here``), not a walk over every member."""
        framed = frame_binary(data)  # the same WebSocket frame for every recipient
        skipped = self.users[skip_user].sessions if skip_user in self.users else ()
        n = 0
        for session in room.here:
            if session is not skip and session not in skipped:
                session.send_framed(framed)
                n += 1
        self.metrics.count_out(t, n)

    def room_event(self, room: Room, user: User, data: bytes, t: str,
                   audience: Iterable[Connection], *, skip: Connection | None = None,
                   to_own: bool = False) -> None:
        """What ``user`` did in ``room`` (joined, left: ``member``; a new member's
        ``presence``) to ``audience`` (but ``skip``): the sessions the domain's rule
        chose. A cluster node applies the same rule on the other nodes. ``to_own``: the
        audience holds the user's own (loud) sessions — a join — wherever they are (a
        cluster node sends those on other nodes their copy by the user's channel: a
        node that does not yet know the user is a member would not have it)."""
        self.to_sessions(audience, data, t, skip=skip)

    def hidden_to_room(self, room: Room, pending: Pending) -> None:
        """A DM message its recipient blocked the sender for: the message to the sender's
        other sessions, the placeholder to the recipient's (the room stays gapless)."""
        sender = pending.msg.sender
        placeholder = pending.placeholder
        assert placeholder is not None
        for name in room.members:
            if name == sender:
                self.to_sessions(self.users[name].sessions, pending.data, "msg",
                                 skip=pending.sender)
            else:
                self.to_sessions(self.users[name].sessions, placeholder, "msg")

    # --- presence ----------------------------------------------------------------------

    def presence(self, user: User, data: bytes) -> None:
        """A change of ``user``'s presence (``data``, as anyone may see it) to its watchers."""
        self.to_sessions(self.watchers(user), data, "presence")

    def watchers(self, user: User) -> set[Connection]:
        """The sessions a change of the user's presence goes to: every session of its
        contact-list owners, and the loud sessions of its group rooms (quiet ones hear of
        room members only through ``joined``/``members``); blocked users excluded.

        O(contact watchers + loud sessions of the user's rooms), not O(members)."""
        out: set[Connection] = set()
        users = self.users
        for name in self.world.listed_by.get(user.name, ()):
            watcher = users.get(name)
            if watcher is not None and watcher.sessions and not user.has_blocked(name):
                out.update(watcher.sessions)
        for room in self.world.group_rooms(user):
            for session in room.loud:
                other = session.user
                if other is not None and other is not user and not user.has_blocked(other.name):
                    out.add(session)
        return out

    def block_presence(self, target: User, data: bytes, *, loud_only: bool) -> None:
        """The presence a block or unblock shows ``target`` (all its sessions, or only
        the loud ones when it watches through a shared room alone)."""
        self.to_sessions([s for s in target.sessions if not (loud_only and s.quiet)], data,
                         "presence")

    def is_watcher(self, user: User, name: str) -> bool:
        """Whether ``name`` watches ``user``'s presence (lists them, or shares a group room)."""
        if name in self.world.listed_by.get(user.name, ()):
            return True
        rooms = self.world.rooms
        return any(name in rooms[r].members for r in user.rooms if not rooms[r].is_dm)
