"""Delivery on a cluster node: the domain's ``Delivery``, plus what other nodes send.

Each node delivers to the sessions it holds, and only to them. A room's messages reach
every node subscribed to the room (``stored``: the node's fan-out of one stored message,
the sender's own session skipped); a frame the domain sends one user (``to_user``) also
goes out on the user's channel to the nodes holding the user's other sessions
(``relayed`` there), a change of a user's presence to every node, each telling the
watchers it holds (``presence_relayed``), and what happens in a room besides messages
(``member``, a new member's ``presence``, ``typing``) to the nodes subscribed to it,
each applying the domain's audience rule to its own sessions. Who may see what was
decided by the domain before the bytes got here; the one decision left is private
blocking's placeholder, which the message's origin tag carries (``/h``) for every node
to apply alike.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Protocol

import msgpack

from cfm_common.codec import decode_server, encode_msg
from cfm_server.cluster.scripts import HIDDEN_SUFFIX
from cfm_server.domain.delivery import Delivery
from cfm_server.domain.hidden import hidden_placeholder
from cfm_server.domain.ports import Connection
from cfm_server.domain.world import World
from cfm_server.state import Room, User
from cfm_server.wsframe import frame_binary

log = logging.getLogger(__name__)



class NodeLink(Protocol):
    """What delivery needs of its node (``node.ClusterNode``)."""

    origin: str
    session_prefix: str  # of the ids of this node's sessions; not in the origin tag

    def send_to_user(self, name: str, frame: bytes, *, loud_only: bool = False) -> None: ...

    def send_presence(self, name: str, frame: bytes) -> None: ...

    def send_room_event(self, room: str, t: str, user: str, frame: bytes) -> None: ...


class ClusterDelivery(Delivery):
    def __init__(self, world: World, node: NodeLink) -> None:
        super().__init__(world)
        self._node = node

    def to_user(self, user: User, data: bytes, t: str, *,
                skip: Connection | None = None) -> None:
        super().to_user(user, data, t, skip=skip)
        self._node.send_to_user(user.name, data)

    def to_room(self, room: Room, data: bytes, t: str, *, skip: Connection | None = None,
                skip_user: str | None = None) -> None:
        """(On a cluster node only what is not a message comes here: ``typing``.)"""
        super().to_room(room, data, t, skip=skip, skip_user=skip_user)
        self._node.send_room_event(room.name, t, skip_user or "-", data)

    def room_relayed(self, room: Room, data: bytes, t: str, skip_user: str) -> None:
        """What another node sent ``room``'s members: to the sessions here."""
        super().to_room(room, data, t, skip_user=skip_user)

    def room_event(self, room: Room, user: User, data: bytes, t: str,
                   audience: Iterable[Connection], *, skip: Connection | None = None,
                   to_own: bool = False) -> None:
        super().room_event(room, user, data, t, audience, skip=skip)
        self._node.send_room_event(room.name, t, user.name, data)
        if to_own:
            # The other nodes leave the user's own sessions out of the room's copy
            # (node._on_room_event): theirs comes this way, once.
            self._node.send_to_user(user.name, data, loud_only=True)

    def presence(self, user: User, data: bytes) -> None:
        super().presence(user, data)
        self._node.send_presence(user.name, data)

    def presence_relayed(self, user: User, data: bytes) -> None:
        """A presence frame another node sent ``user``'s watchers: to those here (the
        same rule, ``watchers``, on every node)."""
        super().presence(user, data)

    def block_presence(self, target: User, data: bytes, *, loud_only: bool) -> None:
        super().block_presence(target, data, loud_only=loud_only)
        self._node.send_to_user(target.name, data, loud_only=loud_only)

    def relayed(self, user: User, frame: bytes, *, loud_only: bool = False) -> None:
        """A frame another node sent ``user``: to the user's sessions here (``loud_only``:
        not to its quiet ones)."""
        sessions = [s for s in user.sessions if not s.quiet] if loud_only else user.sessions
        self.to_sessions(sessions, frame, _frame_type(frame))

    def stored(self, room: Room, origin: str, msg: bytes) -> None:
        """One stored message of ``room`` (in seq order, once): to every session here of
        every member, but the one that sent it; a hidden one's placeholder to the peer."""
        hidden = origin.endswith(HIDDEN_SUFFIX)
        proc, _, session_id = origin.removesuffix(HIDDEN_SUFFIX).partition("/")
        skip_id = self._node.session_prefix + session_id if proc == self._node.origin else None
        if hidden and room.is_dm:
            self._hidden(room, msg, skip_id)
            return
        framed = frame_binary(msg)
        here = room.here  # the members' sessions on this node
        if skip_id is None:  # sent from another node: no test per session
            for session in here:
                session.send_framed(framed)
            n = len(here)
        else:
            n = 0
            for session in here:
                if session.id != skip_id:
                    session.send_framed(framed)
                    n += 1
        self.metrics.count_out("msg", n)

    def _hidden(self, room: Room, msg: bytes, skip_id: str | None) -> None:
        stored = decode_server(msg).to_stored()  # type: ignore[union-attr]
        placeholder = encode_msg(hidden_placeholder(stored))
        for name in room.members:
            sessions = [s for s in self.users[name].sessions if s.id != skip_id]
            self.to_sessions(sessions, msg if name == stored.sender else placeholder, "msg")


def _frame_type(frame: bytes) -> str:
    try:
        t = msgpack.unpackb(frame).get("t")
    except Exception:
        return "?"
    return t if isinstance(t, str) else "?"
