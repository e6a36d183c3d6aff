"""The wire rules of frame fields: :func:`wire` declares a field, the ``check_*``
functions are the checks the codec runs on a decoded value (raising
:class:`~cfm_common.errors.ProtocolError` with the code a peer gets back).

The frames themselves are in :mod:`cfm_common.client_frames` and
:mod:`cfm_common.server_frames`; :mod:`cfm_common.frames` gathers both. Nothing here does I/O.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import field
from typing import Any

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


def fast_init(cls: type) -> type:
    """Give a frozen, slotted frame class an ``__init__`` that sets its slots through
    their descriptors, as the generated one does through ``object.__setattr__`` (which
    a frozen class needs) but at half the cost: a message is built once per ``say`` and
    once per message of every history page and replay, and its sixteen fields (with the
    extensions) made that cost count. Same signature, same frozen instances."""
    fields = dataclasses.fields(cls)
    setters = {f"_set_{f.name}": cls.__dict__[f.name].__set__ for f in fields}
    params = ", ".join(f.name if f.default is dataclasses.MISSING else f"{f.name}=None"
                       for f in fields)
    body = "".join(f"\n    _set_{f.name}(self, {f.name})" for f in fields)
    namespace: dict[str, Any] = {}
    exec(f"def __init__(self, {params}):{body}", setters, namespace)
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    cls.__init__ = init  # type: ignore[misc]
    return cls


# --- checks --------------------------------------------------------------------------


def bad_frame(msg: str) -> ProtocolError:
    return ProtocolError(ErrorCode.BAD_FRAME, msg)


def check_name(value: str) -> None:
    if not rules.is_valid_name(value):
        raise ProtocolError(
            ErrorCode.NAME_INVALID,
            "a handle is 2-24 characters of A-Z a-z 0-9 _ . - starting with a letter or digit",
        )


def check_room(value: str) -> None:
    if not rules.is_valid_room(value):
        raise bad_frame(f"not a room name: {value[:40]!r} (want # and 1-32 of a-z 0-9 _ -, "
                        f"or dm:<a>:<b> with two lower-case handles in order)")


def check_group_room(value: str) -> None:
    if not rules.is_group_room(value):
        raise bad_frame(f"not a group room: {value[:40]!r} (want # and 1-32 of a-z 0-9 _ -)")


def check_client_status(value: str) -> None:
    if value not in rules.CLIENT_STATUSES:
        raise bad_frame(f"unknown status {value[:20]!r}; one of {sorted(rules.CLIENT_STATUSES)}")


def check_server_status(value: str) -> None:
    if value not in rules.SERVER_STATUSES:
        raise bad_frame(f"unknown status {value[:20]!r}")


def short_text(limit: int, what: str) -> Check:
    def check(value: str) -> None:
        if len(value) > limit:
            raise ProtocolError(ErrorCode.TOO_LONG, f"{what} is longer than {limit} characters")
        if rules.has_control_chars(value):
            raise bad_frame(f"{what} holds a control character")

    return check


check_display = short_text(rules.MAX_DISPLAY, "display")
check_psm = short_text(rules.MAX_PSM, "psm")


def own_text(check: Check, what: str, *, blank_ok: bool) -> Check:
    """A display name or psm a client sets for itself: also no invisible or format
    characters (look-alike names), and a display name that is not only blank. Server
    frames keep the older rule, so names stored before it still decode."""

    def check_own(value: str) -> None:
        check(value)
        hidden = rules.hidden_char(value)
        if hidden is not None:
            raise bad_frame(f"{what} holds an invisible character ({rules.describe_char(hidden)})")
        if not blank_ok and value and not value.strip():
            raise bad_frame(f"{what} is blank: leave it out to show the handle")

    return check_own


check_own_display = own_text(check_display, "display", blank_ok=False)
check_own_psm = own_text(check_psm, "psm", blank_ok=True)


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
        raise bad_frame("text holds a control character (only tab and line breaks are allowed)")


def bounded_str(limit: int, what: str) -> Check:
    # These strings are echoed to other users (msg.id, error.ref), so no control characters.
    def check(value: str) -> None:
        if not 1 <= len(value) <= limit:
            raise bad_frame(f"{what} must be 1-{limit} characters")
        if rules.has_control_chars(value):
            raise bad_frame(f"{what} holds a control character")

    return check


def check_claim(value: str) -> None:
    if not rules.MIN_CLAIM <= len(value) <= rules.MAX_CLAIM:
        raise bad_frame(f"claim must be {rules.MIN_CLAIM}-{rules.MAX_CLAIM} characters")
    if rules.has_control_chars(value):
        raise bad_frame("claim holds a control character")


check_id = bounded_str(rules.MAX_ID, "id")
check_epoch = bounded_str(rules.MAX_EPOCH, "epoch")
check_client = bounded_str(rules.MAX_CLIENT, "client")


def check_seq(value: int) -> None:
    if not 0 <= value <= rules.MAX_INT:
        raise bad_frame("sequence numbers and times are integers from 0 to 2**63-1")


def check_limit(value: int) -> None:
    if not 1 <= value <= rules.MAX_HISTORY_LIMIT:
        raise bad_frame(f"limit must be 1-{rules.MAX_HISTORY_LIMIT}")


# Big rooms (an additive extension, see docs/protocol.md): a join may cap its member
# list, and a member list is paged with ``members``.
MAX_MEMBERS_LIMIT = 1000
MAX_MEMBERS_PAGE = 500


def check_members_limit(value: int) -> None:
    if not 0 <= value <= MAX_MEMBERS_LIMIT:
        raise bad_frame(f"members_limit must be 0-{MAX_MEMBERS_LIMIT}")


def check_members_page(value: int) -> None:
    if not 1 <= value <= MAX_MEMBERS_PAGE:
        raise bad_frame(f"limit must be 1-{MAX_MEMBERS_PAGE}")


def check_target(value: int) -> None:
    # A message's seq: rooms number their messages from 1.
    if not 1 <= value <= rules.MAX_INT:
        raise bad_frame("a message's seq is an integer from 1 to 2**63-1")


def check_emoji(value: str) -> None:
    # What the server lets through is echoed to every member: short, one line, visible.
    if not 1 <= len(value) <= rules.MAX_EMOJI:
        raise bad_frame(f"emoji must be 1-{rules.MAX_EMOJI} characters")
    if rules.has_control_chars(value) or not value.strip() or value != "".join(value.split()):
        raise bad_frame("emoji holds a control character or white space")


def check_names(value: list[Any]) -> None:
    for name in value:
        if not isinstance(name, str):
            raise bad_frame("a list of handles holds a non-string")
        check_name(name)


def one_of(allowed: frozenset[str] | set[str], what: str) -> Check:
    def check(value: str) -> None:
        if value not in allowed:
            raise bad_frame(f"unknown {what} {value[:20]!r}; one of {sorted(allowed)}")

    return check


def exactly_one_target(frame: Any) -> None:
    if (frame.room is None) == (frame.to is None):
        raise bad_frame(f"{frame.T} takes exactly one of room or to")


# Search (an additive extension, docs/protocol.md "Search", from the server's search
# branch): the words to find, a page size, and an opaque cursor a client copies back.
MAX_SEARCH_TEXT = 200
MAX_SEARCH_LIMIT = 50
MAX_SEARCH_CURSOR = 128  # room for a cluster cursor: ts, room name and seq


def check_search_limit(value: int) -> None:
    if not 1 <= value <= MAX_SEARCH_LIMIT:
        raise bad_frame(f"limit must be 1-{MAX_SEARCH_LIMIT}")


def check_search_text(value: str) -> None:
    if not 1 <= len(value) <= MAX_SEARCH_TEXT:
        raise bad_frame(f"search text must be 1-{MAX_SEARCH_TEXT} characters")
    if rules.has_control_chars(value):
        raise bad_frame("search text holds a control character")


check_cursor = bounded_str(MAX_SEARCH_CURSOR, "before")
