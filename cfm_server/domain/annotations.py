"""What a ``say`` carries besides its text (extensions, docs/protocol.md): the seq of
the message it answers (``reply``) and the members it mentions (``mentions``).

Both are worked out once, when the message is stored, and stored with it: every copy of
the message (live, replayed, paged) carries the same, and a mention is counted in the
mentioned user's ``welcome`` (``changes.unread_counts``) until their read mark passes it.
"""

from __future__ import annotations

from typing import Any

from cfm_common import rules
from cfm_common.errors import ProtocolError
from cfm_common.frames import StoredMsg
from cfm_common.rules import ErrorCode
from cfm_server.domain.world import World
from cfm_server.state import Room, User


def annotations(world: World, room: Room | None, user: User, peer: User | None,
                reply: int | None, text: str,
                answered: StoredMsg | None = None) -> dict[str, Any] | None:
    """What a ``say`` stores besides its text: ``reply`` (checked: a message of the room
    the user has been shown) and ``mentions`` (the room's members it names as @handle,
    the sender aside). ``room`` is None for a DM's first message; ``peer`` is the DM's
    other user; ``answered`` the message ``reply`` names, as read (``World.reads``)."""
    extra: dict[str, Any] = {}
    if reply is not None:
        if room is None or reply > room.durable_seq:
            raise ProtocolError(ErrorCode.BAD_FRAME, f"reply: no message {reply} in this room")
        if answered is None:
            raise ProtocolError(ErrorCode.FORBIDDEN, f"reply: message {reply} is no longer stored")
        if answered.change is not None:
            raise ProtocolError(ErrorCode.BAD_FRAME, f"reply: {reply} is a change, not a message")
        extra["reply"] = reply
    if "@" in text:
        members = room.members if room is not None and not room.is_dm else (
            {user.name, peer.name} if peer is not None else set())
        names = rules.mentioned_names(text, lambda n: n != user.name and n in members)
        if names:
            extra["mentions"] = tuple(names)
    return extra or None
