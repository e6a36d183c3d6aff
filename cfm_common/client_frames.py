"""Client → server frames: one frozen, slotted dataclass per ``t`` a client sends.

Each field carries its wire rules (:func:`cfm_common.frame_fields.wire`); ``CHECK`` is a
rule across fields. :mod:`cfm_common.frames` gathers these with the server's frames.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from cfm_common import rules
from cfm_common.frame_fields import (
    Check,
    bad_frame,
    bounded_str,
    check_claim,
    check_client,
    check_client_status,
    check_cursor,
    check_emoji,
    check_epoch,
    check_group_room,
    check_id,
    check_limit,
    check_members_limit,
    check_members_page,
    check_name,
    check_own_display,
    check_own_psm,
    check_room,
    check_search_limit,
    check_search_text,
    check_seq,
    check_target,
    check_text,
    exactly_one_target,
    one_of,
    wire,
)


@dataclass(frozen=True, slots=True)
class Hello:
    T: ClassVar[str] = "hello"
    v: int = wire(int)
    name: str = wire(str, check_name)
    token: str | None = wire(str, bounded_str(256, "token"), optional=True)
    status: str | None = wire(str, check_client_status, optional=True)
    display: str | None = wire(str, check_own_display, optional=True)
    psm: str | None = wire(str, check_own_psm, optional=True)
    client: str | None = wire(str, check_client, optional=True)
    bot: bool | None = wire(bool, optional=True)
    # True: no member frames, and no presence heard only through a shared group room.
    quiet: bool | None = wire(bool, optional=True)
    # An operator's invite code, for claiming a new handle where registration needs one.
    invite: str | None = wire(str, bounded_str(rules.MAX_INVITE, "invite"), optional=True)
    # A secret the client made to claim a new handle (it becomes the account's token): a
    # retry of a claim whose answer was lost signs in with it (docs/protocol.md).
    claim: str | None = wire(str, check_claim, optional=True)


@dataclass(frozen=True, slots=True)
class SetPresence:
    T: ClassVar[str] = "presence"
    status: str | None = wire(str, check_client_status, optional=True)
    display: str | None = wire(str, check_own_display, optional=True)
    psm: str | None = wire(str, check_own_psm, optional=True)


@dataclass(frozen=True, slots=True)
class Join:
    T: ClassVar[str] = "join"
    room: str = wire(str, check_room)
    since: int | None = wire(int, check_seq, optional=True)
    epoch: str | None = wire(str, check_epoch, optional=True)
    members_limit: int | None = wire(int, check_members_limit, optional=True)
    # Extension (request ids): the client's id for this request; its answer carries it
    # back as ``ref``, and so does an error refusing it.
    id: str | None = wire(str, check_id, optional=True)


@dataclass(frozen=True, slots=True)
class Leave:
    T: ClassVar[str] = "leave"
    room: str = wire(str, check_group_room)
    # Extension (request ids): the client's id for this request; its answer carries it
    # back as ``ref``, and so does an error refusing it.
    id: str | None = wire(str, check_id, optional=True)


@dataclass(frozen=True, slots=True)
class Say:
    T: ClassVar[str] = "say"
    CHECK: ClassVar[Check] = exactly_one_target
    text: str = wire(str, check_text)
    id: str = wire(str, check_id)
    room: str | None = wire(str, check_room, optional=True)
    to: str | None = wire(str, check_name, optional=True)
    # Extension (replies): the seq, in the same room, of the message this one answers.
    reply: int | None = wire(int, check_target, optional=True)


@dataclass(frozen=True, slots=True)
class SendTyping:
    T: ClassVar[str] = "typing"
    CHECK: ClassVar[Check] = exactly_one_target
    room: str | None = wire(str, check_room, optional=True)
    to: str | None = wire(str, check_name, optional=True)


@dataclass(frozen=True, slots=True)
class Nudge:
    T: ClassVar[str] = "nudge"
    to: str = wire(str, check_name)
    id: str | None = wire(str, check_id, optional=True)


def _history_range(frame: GetHistory) -> None:
    if frame.before is not None and frame.after is not None:
        raise bad_frame("history takes before or after, not both")


@dataclass(frozen=True, slots=True)
class GetHistory:
    T: ClassVar[str] = "history"
    CHECK: ClassVar[Check] = _history_range
    room: str = wire(str, check_room)
    before: int | None = wire(int, check_seq, optional=True)
    after: int | None = wire(int, check_seq, optional=True)
    limit: int | None = wire(int, check_limit, optional=True)
    # Extension (request ids): the client's id for this request; its answer carries it
    # back as ``ref``, and so does an error refusing it.
    id: str | None = wire(str, check_id, optional=True)


@dataclass(frozen=True, slots=True)
class GetMembers:
    """A page of a group room's member list, sorted by name, names after ``after``."""

    T: ClassVar[str] = "members"
    room: str = wire(str, check_room)
    after: str | None = wire(str, check_name, optional=True)
    limit: int | None = wire(int, check_members_page, optional=True)
    # Extension (request ids): the client's id for this request; its answer carries it
    # back as ``ref``, and so does an error refusing it.
    id: str | None = wire(str, check_id, optional=True)


@dataclass(frozen=True, slots=True)
class MarkRead:
    T: ClassVar[str] = "read"
    room: str = wire(str, check_room)
    seq: int = wire(int, check_seq)


@dataclass(frozen=True, slots=True)
class ContactRequest:
    T: ClassVar[str] = "contact"
    op: str = wire(str, one_of(rules.CLIENT_CONTACT_OPS, "contact op"))
    name: str = wire(str, check_name)
    # Extension (request ids): the client's id for this request; its answer carries it
    # back as ``ref``, and so does an error refusing it.
    id: str | None = wire(str, check_id, optional=True)


# Extension (message changes, docs/protocol.md): each is stored as a change entry in the
# room's sequence and acknowledged like a say, idempotent by (sender, id).


@dataclass(frozen=True, slots=True)
class Edit:
    """Replace the text of one's own message ``target`` of ``room``."""

    T: ClassVar[str] = "edit"
    room: str = wire(str, check_room)
    target: int = wire(int, check_target)
    text: str = wire(str, check_text)
    id: str = wire(str, check_id)


@dataclass(frozen=True, slots=True)
class Delete:
    """Delete a message: one's own, or anyone's in a group room one moderates."""

    T: ClassVar[str] = "delete"
    room: str = wire(str, check_room)
    target: int = wire(int, check_target)
    id: str = wire(str, check_id)


@dataclass(frozen=True, slots=True)
class React:
    T: ClassVar[str] = "react"
    room: str = wire(str, check_room)
    target: int = wire(int, check_target)
    emoji: str = wire(str, check_emoji)
    id: str = wire(str, check_id)


@dataclass(frozen=True, slots=True)
class Unreact:
    T: ClassVar[str] = "unreact"
    room: str = wire(str, check_room)
    target: int = wire(int, check_target)
    emoji: str = wire(str, check_emoji)
    id: str = wire(str, check_id)


def _one_change(frame: SetModerators) -> None:
    if frame.add is not None and frame.remove is not None:
        raise bad_frame("moderators takes add or remove, not both")


@dataclass(frozen=True, slots=True)
class SetModerators:
    """A group room's moderators: without ``add`` or ``remove`` a question; with one, a
    change only the room's creator may make."""

    T: ClassVar[str] = "moderators"
    CHECK: ClassVar[Check] = _one_change
    room: str = wire(str, check_group_room)
    add: str | None = wire(str, check_name, optional=True)
    remove: str | None = wire(str, check_name, optional=True)
    id: str | None = wire(str, check_id, optional=True)


@dataclass(frozen=True, slots=True)
class Search:
    """Stored messages holding every word of ``text``, newest first, from the rooms and
    DMs the user is a member of (or only ``room``). ``before`` is the ``next`` cursor
    of the previous answer: an opaque string, only ever copied back."""

    T: ClassVar[str] = "search"
    text: str = wire(str, check_search_text)
    room: str | None = wire(str, check_room, optional=True)
    before: str | None = wire(str, check_cursor, optional=True)
    limit: int | None = wire(int, check_search_limit, optional=True)
    # Extension (request ids): as on history.
    id: str | None = wire(str, check_id, optional=True)
