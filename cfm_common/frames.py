"""Every frame of the protocol as a frozen, slotted dataclass, one class per ``t``, and
the registries the codec reads: :data:`CLIENT_FRAMES` and :data:`SERVER_FRAMES`.

Several ``t`` values exist in both directions with different keys (``presence``,
``typing``, ``read``, ``history``, ``contact``), so the two directions have their own
classes: :mod:`cfm_common.client_frames` and :mod:`cfm_common.server_frames`. Each field
carries its wire rules in its metadata (:mod:`cfm_common.frame_fields`), which
:mod:`cfm_common.codec` walks; nothing here does I/O. This module gathers the three, so
``frames.Msg`` and ``from cfm_common.frames import check_text`` keep working.
"""

from __future__ import annotations

from cfm_common.client_frames import (
    ContactRequest,
    Delete,
    Edit,
    GetHistory,
    GetMembers,
    Hello,
    Join,
    Leave,
    MarkRead,
    Nudge,
    React,
    Say,
    Search,
    SendTyping,
    SetModerators,
    SetPresence,
    Unreact,
)
from cfm_common.frame_fields import (
    MAX_MEMBERS_LIMIT,
    MAX_MEMBERS_PAGE,
    MAX_SEARCH_CURSOR,
    MAX_SEARCH_LIMIT,
    MAX_SEARCH_TEXT,
    Check,
    bad_frame,
    bounded_str,
    check_claim,
    check_client,
    check_client_status,
    check_cursor,
    check_display,
    check_emoji,
    check_epoch,
    check_group_room,
    check_id,
    check_limit,
    check_members_limit,
    check_members_page,
    check_name,
    check_names,
    check_own_display,
    check_own_psm,
    check_psm,
    check_room,
    check_search_limit,
    check_search_text,
    check_seq,
    check_server_status,
    check_target,
    check_text,
    exactly_one_target,
    fast_init,
    one_of,
    own_text,
    short_text,
    wire,
)
from cfm_common.server_frames import (
    Ack,
    Contact,
    Error,
    History,
    Joined,
    Left,
    Member,
    MembersPage,
    Moderators,
    Msg,
    Presence,
    Reaction,
    Read,
    RoomState,
    RosterEntry,
    SearchResults,
    StoredMsg,
    Typing,
    Welcome,
)

ClientFrame = (
    Hello | SetPresence | Join | Leave | Say | SendTyping | Nudge | GetHistory | MarkRead
    | ContactRequest | GetMembers | Edit | Delete | React | Unreact | SetModerators | Search
)
ServerFrame = (
    Welcome | Presence | Joined | Left | Member | Msg | Ack | Typing | Read | History | Contact
    | Error | MembersPage | Moderators | SearchResults
)

CLIENT_FRAMES: dict[str, type] = {
    cls.T: cls
    for cls in (Hello, SetPresence, Join, Leave, Say, SendTyping, Nudge, GetHistory, MarkRead,
                ContactRequest, GetMembers, Edit, Delete, React, Unreact, SetModerators,
                Search)
}
SERVER_FRAMES: dict[str, type] = {
    cls.T: cls
    for cls in (Welcome, Presence, Joined, Left, Member, Msg, Ack, Typing, Read, History,
                Contact, Error, MembersPage, Moderators, SearchResults)
}

__all__ = [
    "CLIENT_FRAMES",
    "MAX_MEMBERS_LIMIT",
    "MAX_MEMBERS_PAGE",
    "MAX_SEARCH_CURSOR",
    "MAX_SEARCH_LIMIT",
    "MAX_SEARCH_TEXT",
    "SERVER_FRAMES",
    "Ack",
    "Check",
    "ClientFrame",
    "Contact",
    "ContactRequest",
    "Delete",
    "Edit",
    "Error",
    "GetHistory",
    "GetMembers",
    "Hello",
    "History",
    "Join",
    "Joined",
    "Leave",
    "Left",
    "MarkRead",
    "Member",
    "MembersPage",
    "Moderators",
    "Msg",
    "Nudge",
    "Presence",
    "React",
    "Reaction",
    "Read",
    "RoomState",
    "RosterEntry",
    "Say",
    "Search",
    "SearchResults",
    "SendTyping",
    "ServerFrame",
    "SetModerators",
    "SetPresence",
    "StoredMsg",
    "Typing",
    "Unreact",
    "Welcome",
    "bad_frame",
    "bounded_str",
    "check_claim",
    "check_client",
    "check_client_status",
    "check_cursor",
    "check_display",
    "check_emoji",
    "check_epoch",
    "check_group_room",
    "check_id",
    "check_limit",
    "check_members_limit",
    "check_members_page",
    "check_name",
    "check_names",
    "check_own_display",
    "check_own_psm",
    "check_psm",
    "check_room",
    "check_search_limit",
    "check_search_text",
    "check_seq",
    "check_server_status",
    "check_target",
    "check_text",
    "exactly_one_target",
    "fast_init",
    "one_of",
    "own_text",
    "short_text",
    "wire",
]
