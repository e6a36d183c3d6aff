"""Server → client frames, and the shapes they hold (roster entries, room states,
stored messages with their reactions): one frozen, slotted dataclass per ``t``.

Several ``t`` values exist in both directions with different keys (``presence``,
``typing``, ``read``, ``history``, ``contact``, ``moderators``), hence two modules.
:mod:`cfm_common.frames` gathers these with the client's frames.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

from cfm_common import rules
from cfm_common.frame_fields import (
    check_cursor,
    check_display,
    check_emoji,
    check_epoch,
    check_id,
    check_name,
    check_names,
    check_psm,
    check_room,
    check_seq,
    check_server_status,
    check_target,
    fast_init,
    one_of,
    wire,
)


@dataclass(frozen=True, slots=True)
class RosterEntry:
    """A user as a contact list or member list shows them."""

    name: str = wire(str, check_name)
    display: str = wire(str, check_display)
    status: str = wire(str, check_server_status)
    psm: str = wire(str, check_psm)
    bot: bool = wire(bool)
    blocked: bool | None = wire(bool, optional=True)


@dataclass(frozen=True, slots=True)
class RoomState:
    """One room in ``welcome.rooms``: where the user's copy of it should be."""

    room: str = wire(str, check_room)
    seq: int = wire(int, check_seq)
    read: int = wire(int, check_seq)
    epoch: str = wire(str, check_epoch)
    # Extension (unread and mentions): messages from others after the user's read mark
    # (changes, the user's own and hidden ones not counted), and how many of them mention
    # the user; sent for a room with anything past the read mark (absent: 0).
    unread: int | None = wire(int, check_seq, optional=True)
    mentions: int | None = wire(int, check_seq, optional=True)


@dataclass(frozen=True, slots=True)
class Reaction:
    """One emoji on a message (``msg.reactions``): who reacted with it, oldest first."""

    emoji: str = wire(str, check_emoji)
    names: tuple[str, ...] = wire(list, check_names)


@fast_init
@dataclass(frozen=True, slots=True)
class StoredMsg:
    """A message as ``history.msgs`` carries it: a ``msg`` frame without ``t``."""

    room: str = wire(str, check_room)
    seq: int = wire(int, check_seq)
    sender: str = wire(str, check_name, key="from")
    text: str = wire(str)
    ts: int = wire(int, check_seq)
    kind: str = wire(str, one_of({k.value for k in rules.MsgKind}, "kind"))
    id: str | None = wire(str, optional=True)
    # Extension (private blocking): True on the placeholder a blocker receives in place
    # of a message from the user they blocked (empty text, kind "text", no id). In the
    # store it marks the message as hidden from the DM room's other member.
    hidden: bool | None = wire(bool, optional=True)
    # Extensions (message changes, docs/protocol.md): the seq this message answers; the
    # members it mentions; on a change entry what it does (``change``) to which message
    # (``target``) and, for a reaction, the emoji; on a changed message its current
    # state: when it was last edited, whether it is a tombstone, its reactions.
    reply: int | None = wire(int, check_target, optional=True)
    mentions: tuple[str, ...] | None = wire(list, check_names, optional=True)
    change: str | None = wire(str, one_of({c.value for c in rules.ChangeKind}, "change"),
                              optional=True)
    target: int | None = wire(int, check_target, optional=True)
    emoji: str | None = wire(str, check_emoji, optional=True)
    edited: int | None = wire(int, check_seq, optional=True)
    deleted: bool | None = wire(bool, optional=True)
    reactions: tuple[Reaction, ...] | None = wire(list, of=Reaction, optional=True)

    @property
    def is_change(self) -> bool:
        """A change entry (an edit, delete, reaction or un-reaction of ``target``), not a
        message to show: apply it to the message it changes (docs/protocol.md)."""
        return self.change is not None


@dataclass(frozen=True, slots=True)
class Welcome:
    T: ClassVar[str] = "welcome"
    v: int = wire(int)
    session: str = wire(str)
    name: str = wire(str, check_name)
    token: str = wire(str)
    display: str = wire(str, check_display)
    status: str = wire(str, check_server_status)
    psm: str = wire(str, check_psm)
    server: str = wire(str)
    limits: dict[str, Any] = wire(dict)
    rooms: tuple[RoomState, ...] = wire(list, of=RoomState)
    contacts: tuple[RosterEntry, ...] = wire(list, of=RosterEntry)


@dataclass(frozen=True, slots=True)
class Presence:
    T: ClassVar[str] = "presence"
    name: str = wire(str, check_name)
    display: str = wire(str, check_display)
    status: str = wire(str, check_server_status)
    psm: str = wire(str, check_psm)
    bot: bool = wire(bool)


@dataclass(frozen=True, slots=True)
class Joined:
    T: ClassVar[str] = "joined"
    room: str = wire(str, check_room)
    seq: int = wire(int, check_seq)
    epoch: str = wire(str, check_epoch)
    members: tuple[RosterEntry, ...] = wire(list, of=RosterEntry)
    more: bool | None = wire(bool, optional=True)
    reset: bool | None = wire(bool, optional=True)
    count: int | None = wire(int, check_seq, optional=True)  # with join.members_limit
    # Extension (request ids): the ``id`` of the request this answers, on the answer to
    # the session that asked (none for a request without one).
    ref: str | None = wire(str, check_id, optional=True)


@dataclass(frozen=True, slots=True)
class Left:
    T: ClassVar[str] = "left"
    room: str = wire(str, check_room)
    # Extension (request ids): the ``id`` of the request this answers, on the answer to
    # the session that asked (none for a request without one).
    ref: str | None = wire(str, check_id, optional=True)


@dataclass(frozen=True, slots=True)
class Member:
    T: ClassVar[str] = "member"
    room: str = wire(str, check_room)
    name: str = wire(str, check_name)
    op: str = wire(str, one_of({o.value for o in rules.MemberOp}, "member op"))


@fast_init
@dataclass(frozen=True, slots=True)
class Msg:
    T: ClassVar[str] = "msg"
    room: str = wire(str, check_room)
    seq: int = wire(int, check_seq)
    sender: str = wire(str, check_name, key="from")
    text: str = wire(str)
    ts: int = wire(int, check_seq)
    kind: str = wire(str, one_of({k.value for k in rules.MsgKind}, "kind"))
    id: str | None = wire(str, optional=True)
    hidden: bool | None = wire(bool, optional=True)  # see StoredMsg.hidden
    # Extensions (message changes): see StoredMsg.
    reply: int | None = wire(int, check_target, optional=True)
    mentions: tuple[str, ...] | None = wire(list, check_names, optional=True)
    change: str | None = wire(str, one_of({c.value for c in rules.ChangeKind}, "change"),
                              optional=True)
    target: int | None = wire(int, check_target, optional=True)
    emoji: str | None = wire(str, check_emoji, optional=True)
    edited: int | None = wire(int, check_seq, optional=True)
    deleted: bool | None = wire(bool, optional=True)
    reactions: tuple[Reaction, ...] | None = wire(list, of=Reaction, optional=True)

    @property
    def is_change(self) -> bool:
        """A change entry, not a message to show: see :attr:`StoredMsg.is_change`."""
        return self.change is not None

    @classmethod
    def from_stored(cls, m: StoredMsg) -> Msg:
        return cls(*(getattr(m, f) for f in _MSG_FIELDS))

    def to_stored(self) -> StoredMsg:
        return StoredMsg(*(getattr(self, f) for f in _MSG_FIELDS))


_MSG_FIELDS = tuple(f.name for f in dataclasses.fields(StoredMsg))


@dataclass(frozen=True, slots=True)
class Ack:
    T: ClassVar[str] = "ack"
    room: str = wire(str, check_room)
    seq: int = wire(int, check_seq)
    ts: int = wire(int, check_seq)
    # The client's id; absent only for a nudge that was sent without one.
    id: str | None = wire(str, optional=True)


@dataclass(frozen=True, slots=True)
class Typing:
    T: ClassVar[str] = "typing"
    room: str = wire(str, check_room)
    sender: str = wire(str, check_name, key="from")


@dataclass(frozen=True, slots=True)
class Read:
    T: ClassVar[str] = "read"
    room: str = wire(str, check_room)
    name: str = wire(str, check_name)
    seq: int = wire(int, check_seq)


@dataclass(frozen=True, slots=True)
class History:
    T: ClassVar[str] = "history"
    room: str = wire(str, check_room)
    msgs: tuple[StoredMsg, ...] = wire(list, of=StoredMsg)
    more: bool = wire(bool)
    # Extension (request ids): the ``id`` of the request this answers, on the answer to
    # the session that asked (none for a request without one).
    ref: str | None = wire(str, check_id, optional=True)


@dataclass(frozen=True, slots=True)
class MembersPage:
    """The answer to ``members``: roster entries sorted by name; ``more`` if others follow."""

    T: ClassVar[str] = "members"
    room: str = wire(str, check_room)
    members: tuple[RosterEntry, ...] = wire(list, of=RosterEntry)
    more: bool = wire(bool)
    # Extension (request ids): the ``id`` of the request this answers, on the answer to
    # the session that asked (none for a request without one).
    ref: str | None = wire(str, check_id, optional=True)


@dataclass(frozen=True, slots=True)
class Moderators:
    """A group room's moderators (an extension): the answer to ``moderators``, and what
    the creator's other sessions and the user named or removed get."""

    T: ClassVar[str] = "moderators"
    room: str = wire(str, check_room)
    names: tuple[str, ...] = wire(list, check_names)
    # The room's creator (also in ``names``); absent for a room made before moderators.
    creator: str | None = wire(str, check_name, optional=True)
    ref: str | None = wire(str, check_id, optional=True)


@dataclass(frozen=True, slots=True)
class Contact:
    T: ClassVar[str] = "contact"
    op: str = wire(str, one_of({o.value for o in rules.ContactOp}, "contact op"))
    name: str = wire(str, check_name)
    display: str | None = wire(str, check_display, optional=True)
    status: str | None = wire(str, check_server_status, optional=True)
    psm: str | None = wire(str, check_psm, optional=True)
    bot: bool | None = wire(bool, optional=True)
    blocked: bool | None = wire(bool, optional=True)
    # Extension (request ids): the ``id`` of the request this answers, on the answer to
    # the session that asked (none for a request without one).
    ref: str | None = wire(str, check_id, optional=True)


@dataclass(frozen=True, slots=True)
class Error:
    T: ClassVar[str] = "error"
    code: str = wire(str)
    msg: str = wire(str)
    ref: str | None = wire(str, optional=True)
    retry_ms: int | None = wire(int, check_seq, optional=True)


@dataclass(frozen=True, slots=True)
class SearchResults:
    """The answer to ``search``: matches newest first, each with its room; ``more`` if
    older ones follow, and then ``next``, the cursor to send as ``before``. ``behind``:
    how many stored messages of the rooms searched the server's index did not hold yet
    (it is built off the write path and may be catching up); absent when none.
    Registered with :class:`cfm_common.client_frames.Search`."""

    T: ClassVar[str] = "search"
    msgs: tuple[StoredMsg, ...] = wire(list, of=StoredMsg)
    more: bool = wire(bool)
    next: str | None = wire(str, check_cursor, optional=True)
    ref: str | None = wire(str, check_id, optional=True)
    behind: int | None = wire(int, check_seq, optional=True)
