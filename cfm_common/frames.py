"""Every frame of the protocol as a frozen, slotted dataclass, one class per ``t``.

Each field carries its wire rules in its metadata (see :func:`wire`): the msgpack type it
must have, an optional check, and its wire key when that is not a Python name (``from``).
:mod:`cfm_common.codec` walks these rules; nothing here does I/O.

Several ``t`` values exist in both directions with different keys (``presence``,
``typing``, ``read``, ``history``, ``contact``), so the two directions have their own
classes and their own registries: :data:`CLIENT_FRAMES` and :data:`SERVER_FRAMES`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from cfm_common import rules
from cfm_common.errors import ProtocolError
from cfm_common.rules import ErrorCode

Check = Callable[[Any], None]


def wire(kind: type | tuple[type, ...], check: Check | None = None, *, key: str | None = None,
         of: type | None = None, optional: bool = False) -> Any:
    """Declare a frame field: its msgpack ``kind``, a ``check``, a wire ``key`` override.

    ``of`` names the frame-like dataclass of each element of a list field (roster
    entries, room states, history messages). Optional fields default to None and are
    left out of the encoded map.
    """
    meta = {"kind": kind, "check": check, "key": key, "of": of}
    if optional:
        return field(default=None, metadata=meta)
    return field(metadata=meta)


# --- checks --------------------------------------------------------------------------


def _bad(msg: str) -> ProtocolError:
    return ProtocolError(ErrorCode.BAD_FRAME, msg)


def check_name(value: str) -> None:
    if not rules.is_valid_name(value):
        raise ProtocolError(
            ErrorCode.NAME_INVALID,
            "a handle is 2-24 characters of A-Z a-z 0-9 _ . - starting with a letter or digit",
        )


def check_room(value: str) -> None:
    if not rules.is_valid_room(value):
        raise _bad(f"not a room name: {value[:40]!r} (want #name or dm:<a>:<b>)")


def check_group_room(value: str) -> None:
    if not rules.is_group_room(value):
        raise _bad(f"not a group room: {value[:40]!r} (want # and 1-32 of a-z 0-9 _ -)")


def check_client_status(value: str) -> None:
    if value not in rules.CLIENT_STATUSES:
        raise _bad(f"unknown status {value[:20]!r}; one of {sorted(rules.CLIENT_STATUSES)}")


def check_server_status(value: str) -> None:
    if value not in rules.SERVER_STATUSES:
        raise _bad(f"unknown status {value[:20]!r}")


def _short_text(limit: int, what: str) -> Check:
    def check(value: str) -> None:
        if len(value) > limit:
            raise ProtocolError(ErrorCode.TOO_LONG, f"{what} is longer than {limit} characters")
        if rules.has_control_chars(value):
            raise _bad(f"{what} holds a control character")

    return check


check_display = _short_text(rules.MAX_DISPLAY, "display")
check_psm = _short_text(rules.MAX_PSM, "psm")


def _own_text(check: Check, what: str, *, blank_ok: bool) -> Check:
    """A display name or psm a client sets for itself: also no invisible or format
    characters (look-alike names), and a display name that is not only blank. Server
    frames keep the older rule, so names stored before it still decode."""

    def check_own(value: str) -> None:
        check(value)
        hidden = rules.hidden_char(value)
        if hidden is not None:
            raise _bad(f"{what} holds an invisible character ({rules.describe_char(hidden)})")
        if not blank_ok and value and not value.strip():
            raise _bad(f"{what} is blank: leave it out to show the handle")

    return check_own


check_own_display = _own_text(check_display, "display", blank_ok=False)
check_own_psm = _own_text(check_psm, "psm", blank_ok=True)


# The characters ``rules.has_forbidden_text_chars`` refuses, as one regex class: every
# ``say`` is checked, and a C scan is ~20x faster than a Python test per character.
# Control characters (category Cc) all lie below U+00A0, and the bidi controls below
# U+3000, so that range holds the whole set (a test compares both over all of Unicode).
_FORBIDDEN_TEXT_CHARS = re.compile(
    "[" + "".join(re.escape(chr(c)) for c in range(0x3000)
                  if rules.has_forbidden_text_chars(chr(c))) + "]"
)


def check_text(value: str) -> None:
    # The length limit is the server's to set (limits.max_text); the codec applies it.
    if _FORBIDDEN_TEXT_CHARS.search(value) is not None:
        raise _bad("text holds a control character (only tab and line breaks are allowed)")


def _bounded_str(limit: int, what: str) -> Check:
    # These strings are echoed to other users (msg.id, error.ref), so no control characters.
    def check(value: str) -> None:
        if not 1 <= len(value) <= limit:
            raise _bad(f"{what} must be 1-{limit} characters")
        if rules.has_control_chars(value):
            raise _bad(f"{what} holds a control character")

    return check


check_id = _bounded_str(rules.MAX_ID, "id")
check_epoch = _bounded_str(rules.MAX_EPOCH, "epoch")
check_client = _bounded_str(rules.MAX_CLIENT, "client")


def check_seq(value: int) -> None:
    if not 0 <= value <= rules.MAX_INT:
        raise _bad("sequence numbers and times are integers from 0 to 2**63-1")


def check_limit(value: int) -> None:
    if not 1 <= value <= rules.MAX_HISTORY_LIMIT:
        raise _bad(f"limit must be 1-{rules.MAX_HISTORY_LIMIT}")


# Big rooms (an additive extension, see docs/protocol.md): a join may cap its member
# list, and a member list is paged with ``members``.
MAX_MEMBERS_LIMIT = 1000
MAX_MEMBERS_PAGE = 500


def check_members_limit(value: int) -> None:
    if not 0 <= value <= MAX_MEMBERS_LIMIT:
        raise _bad(f"members_limit must be 0-{MAX_MEMBERS_LIMIT}")


def check_members_page(value: int) -> None:
    if not 1 <= value <= MAX_MEMBERS_PAGE:
        raise _bad(f"limit must be 1-{MAX_MEMBERS_PAGE}")


def _one_of(allowed: frozenset[str] | set[str], what: str) -> Check:
    def check(value: str) -> None:
        if value not in allowed:
            raise _bad(f"unknown {what} {value[:20]!r}; one of {sorted(allowed)}")

    return check


def _exactly_one_target(frame: Any) -> None:
    if (frame.room is None) == (frame.to is None):
        raise _bad(f"{frame.T} takes exactly one of room or to")


# --- shared shapes -------------------------------------------------------------------


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


@dataclass(frozen=True, slots=True)
class StoredMsg:
    """A message as ``history.msgs`` carries it: a ``msg`` frame without ``t``."""

    room: str = wire(str, check_room)
    seq: int = wire(int, check_seq)
    sender: str = wire(str, check_name, key="from")
    text: str = wire(str)
    ts: int = wire(int, check_seq)
    kind: str = wire(str, _one_of({k.value for k in rules.MsgKind}, "kind"))
    id: str | None = wire(str, optional=True)
    # Extension (private blocking): True on the placeholder a blocker receives in place
    # of a message from the user they blocked (empty text, kind "text", no id). In the
    # store it marks the message as hidden from the DM room's other member.
    hidden: bool | None = wire(bool, optional=True)


# --- client → server -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Hello:
    T: ClassVar[str] = "hello"
    v: int = wire(int)
    name: str = wire(str, check_name)
    token: str | None = wire(str, _bounded_str(256, "token"), optional=True)
    status: str | None = wire(str, check_client_status, optional=True)
    display: str | None = wire(str, check_own_display, optional=True)
    psm: str | None = wire(str, check_own_psm, optional=True)
    client: str | None = wire(str, check_client, optional=True)
    bot: bool | None = wire(bool, optional=True)
    # True: no member frames, and no presence heard only through a shared group room.
    quiet: bool | None = wire(bool, optional=True)
    # An operator's invite code, for claiming a new handle where registration needs one.
    invite: str | None = wire(str, _bounded_str(rules.MAX_INVITE, "invite"), optional=True)


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
    CHECK: ClassVar[Check] = _exactly_one_target
    text: str = wire(str, check_text)
    id: str = wire(str, check_id)
    room: str | None = wire(str, check_room, optional=True)
    to: str | None = wire(str, check_name, optional=True)


@dataclass(frozen=True, slots=True)
class SendTyping:
    T: ClassVar[str] = "typing"
    CHECK: ClassVar[Check] = _exactly_one_target
    room: str | None = wire(str, check_room, optional=True)
    to: str | None = wire(str, check_name, optional=True)


@dataclass(frozen=True, slots=True)
class Nudge:
    T: ClassVar[str] = "nudge"
    to: str = wire(str, check_name)
    id: str | None = wire(str, check_id, optional=True)


def _history_range(frame: GetHistory) -> None:
    if frame.before is not None and frame.after is not None:
        raise _bad("history takes before or after, not both")


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


# Search (an additive extension, see docs/protocol.md "Search").
MAX_SEARCH_TEXT = 200
MAX_SEARCH_LIMIT = 50
MAX_SEARCH_CURSOR = 128  # room for a cluster cursor: ts, room name and seq


def check_search_limit(value: int) -> None:
    if not 1 <= value <= MAX_SEARCH_LIMIT:
        raise _bad(f"limit must be 1-{MAX_SEARCH_LIMIT}")


def check_search_text(value: str) -> None:
    if not 1 <= len(value) <= MAX_SEARCH_TEXT:
        raise _bad(f"search text must be 1-{MAX_SEARCH_TEXT} characters")
    if rules.has_control_chars(value):
        raise _bad("search text holds a control character")


check_cursor = _bounded_str(MAX_SEARCH_CURSOR, "before")


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


@dataclass(frozen=True, slots=True)
class MarkRead:
    T: ClassVar[str] = "read"
    room: str = wire(str, check_room)
    seq: int = wire(int, check_seq)


@dataclass(frozen=True, slots=True)
class ContactRequest:
    T: ClassVar[str] = "contact"
    op: str = wire(str, _one_of(rules.CLIENT_CONTACT_OPS, "contact op"))
    name: str = wire(str, check_name)
    # Extension (request ids): the client's id for this request; its answer carries it
    # back as ``ref``, and so does an error refusing it.
    id: str | None = wire(str, check_id, optional=True)


# --- server → client -----------------------------------------------------------------


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
    op: str = wire(str, _one_of({o.value for o in rules.MemberOp}, "member op"))


@dataclass(frozen=True, slots=True)
class Msg:
    T: ClassVar[str] = "msg"
    room: str = wire(str, check_room)
    seq: int = wire(int, check_seq)
    sender: str = wire(str, check_name, key="from")
    text: str = wire(str)
    ts: int = wire(int, check_seq)
    kind: str = wire(str, _one_of({k.value for k in rules.MsgKind}, "kind"))
    id: str | None = wire(str, optional=True)
    hidden: bool | None = wire(bool, optional=True)  # see StoredMsg.hidden

    @classmethod
    def from_stored(cls, m: StoredMsg) -> Msg:
        return cls(m.room, m.seq, m.sender, m.text, m.ts, m.kind, m.id, m.hidden)

    def to_stored(self) -> StoredMsg:
        return StoredMsg(self.room, self.seq, self.sender, self.text, self.ts, self.kind,
                         self.id, self.hidden)


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
class SearchResults:
    """The answer to ``search``: matches newest first, each with its room; ``more`` if
    older ones follow, and then ``next``, the cursor to send as ``before``. ``behind``:
    how many stored messages of the rooms searched the server's index did not hold yet
    (it is built off the write path and may be catching up); absent when none."""

    T: ClassVar[str] = "search"
    msgs: tuple[StoredMsg, ...] = wire(list, of=StoredMsg)
    more: bool = wire(bool)
    next: str | None = wire(str, check_cursor, optional=True)
    ref: str | None = wire(str, check_id, optional=True)
    behind: int | None = wire(int, check_seq, optional=True)


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
class Contact:
    T: ClassVar[str] = "contact"
    op: str = wire(str, _one_of({o.value for o in rules.ContactOp}, "contact op"))
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


ClientFrame = (
    Hello | SetPresence | Join | Leave | Say | SendTyping | Nudge | GetHistory | MarkRead
    | ContactRequest | GetMembers | Search
)
ServerFrame = (
    Welcome | Presence | Joined | Left | Member | Msg | Ack | Typing | Read | History | Contact
    | Error | MembersPage | SearchResults
)

CLIENT_FRAMES: dict[str, type] = {
    cls.T: cls
    for cls in (Hello, SetPresence, Join, Leave, Say, SendTyping, Nudge, GetHistory, MarkRead,
                ContactRequest, GetMembers, Search)
}
SERVER_FRAMES: dict[str, type] = {
    cls.T: cls
    for cls in (Welcome, Presence, Joined, Left, Member, Msg, Ack, Typing, Read, History,
                Contact, Error, MembersPage, SearchResults)
}
