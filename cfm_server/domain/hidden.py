"""Blocking's hidden messages: what each side of a DM sees of a message sent across a block.

Blocking is private: the sender is acked as usual and never told. The message is stored
with its ``hidden`` mark, so the room stays gapless; its sender sees it as any other, and
the blocker sees a placeholder holding its place (seq, ts, sender) and nothing it carried.
"""

from __future__ import annotations

import dataclasses

from cfm_common.frames import StoredMsg
from cfm_common.rules import MsgKind
from cfm_server.state import Room, User


def hidden_from_peer(sender: User, peer: User | None) -> bool:
    """Whether a DM message from ``sender`` is hidden from ``peer``: the peer blocked them."""
    return peer is not None and peer.has_blocked(sender.name)


def hidden_placeholder(m: StoredMsg) -> StoredMsg:
    """What the blocker receives in place of a hidden message (a change entry included:
    nothing of what it changes either)."""
    return StoredMsg(m.room, m.seq, m.sender, "", m.ts, MsgKind.TEXT.value, None, True)


def as_seen_by(user: User, room: Room, msgs: list[StoredMsg]) -> list[StoredMsg]:
    """Stored messages as ``user`` may see them: hidden ones are placeholders to the
    user they are hidden from, and plain messages to their sender."""
    if not room.is_dm or not any(m.hidden for m in msgs):
        return msgs
    return [m if not m.hidden else
            dataclasses.replace(m, hidden=None) if m.sender == user.name
            else hidden_placeholder(m)
            for m in msgs]
