"""The protocol's vocabulary, defined once: names, rooms, statuses, limits and codes.

Everything here is pure and shared by the server, the TUI and every bot, so that a
handle the client accepts is exactly a handle the server accepts.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from enum import IntEnum, StrEnum
from typing import Final

# Where a cfm server listens: its WebSocket path, and the port ``cfm serve`` takes.
WS_PATH: Final = "/ws"
DEFAULT_PORT: Final = 1863

# --- handles -------------------------------------------------------------------------

NAME_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{1,23}")
GROUP_ROOM_RE: Final = re.compile(r"#[a-z0-9_\-]{1,32}")
LOBBY: Final = "#lobby"
DM_PREFIX: Final = "dm:"


def is_valid_name(name: str) -> bool:
    """A handle: 2–24 of ``A–Z a–z 0–9 _ . -``, starting with a letter or digit."""
    return NAME_RE.fullmatch(name) is not None


def normalize_name(name: str) -> str:
    """Handles compare case-insensitively; the lower-cased form is the canonical one."""
    return name.lower()


def dm_room(a: str, b: str) -> str:
    """The DM room of two users: ``dm:<a>:<b>`` with the lower-cased handles sorted."""
    x, y = sorted((normalize_name(a), normalize_name(b)))
    return f"{DM_PREFIX}{x}:{y}"


def is_group_room(room: str) -> bool:
    return GROUP_ROOM_RE.fullmatch(room) is not None


def dm_members(room: str) -> tuple[str, str] | None:
    """The two handles of a well-formed DM room name, or None if it is not one.

    Well-formed means canonical: both handles valid and lower-case, sorted, distinct.
    """
    if not room.startswith(DM_PREFIX):
        return None
    parts = room[len(DM_PREFIX) :].split(":")
    if len(parts) != 2:
        return None
    a, b = parts
    if not (is_valid_name(a) and is_valid_name(b)):
        return None
    if a != a.lower() or b != b.lower() or not a < b:
        return None
    return a, b


def is_valid_room(room: str) -> bool:
    return is_group_room(room) or dm_members(room) is not None


# --- free text -----------------------------------------------------------------------

MAX_DISPLAY: Final = 64
MAX_PSM: Final = 128
MAX_ID: Final = 64
MAX_EPOCH: Final = 64
MAX_CLIENT: Final = 64
MAX_INVITE: Final = 128  # hello.invite (an extension: registration by invite)
# hello.claim (an extension): the secret a client made to claim a new handle, which
# becomes its token; at least 256 bits in URL-safe base64 (secrets.token_urlsafe(32)).
MIN_CLAIM: Final = 43
MAX_CLAIM: Final = 256
DEFAULT_MAX_TEXT: Final = 4096
DEFAULT_MAX_FRAME: Final = 65536
MAX_HISTORY_LIMIT: Final = 200
MAX_EMOJI: Final = 16  # a reaction (an extension): one emoji, with its joiners and modifiers
# Sequence numbers and times travel as msgpack ints; anything past 2**63 - 1 is nonsense.
MAX_INT: Final = 2**63 - 1

# Bidi embeddings, overrides and isolates reorder what follows them on screen, so in a
# display name or personal message they are treated as the control characters they are.
_BIDI_CONTROLS: Final = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
# Message text may span lines; every other control character is refused.
_TEXT_ALLOWED_CONTROLS: Final = frozenset("\t\n\r")


def _is_control(ch: str) -> bool:
    return unicodedata.category(ch) == "Cc" or ch in _BIDI_CONTROLS


# The same set as one regex class (category Cc is exactly U+0000-001F and U+007F-009F):
# every say's id is checked, and a C scan is much faster than a Python test per
# character (a test compares both over all of Unicode).
_CONTROL_CHARS: Final = re.compile(
    "[\x00-\x1f\x7f-\x9f" + "".join(sorted(_BIDI_CONTROLS)) + "]")


def has_control_chars(value: str) -> bool:
    """True if ``value`` holds a control character (C0, DEL, C1 or a bidi control)."""
    return _CONTROL_CHARS.search(value) is not None


def has_forbidden_text_chars(text: str) -> bool:
    """Message text allows tab and line breaks; no other control character."""
    return any(_is_control(ch) and ch not in _TEXT_ALLOWED_CONTROLS for ch in text)


# --- look-alike names ---------------------------------------------------------------

# Characters that show as nothing (or as blank space) but are no space: in a display name
# or personal message they only serve to pass for someone else ("Alice\u200bLiddell") or
# to look blank. Format characters (category Cf: zero-width spaces, word joiner, BOM,
# soft hyphen, tag characters, bidi marks and controls) are refused by category; these
# are the invisible ones of other categories.
_INVISIBLE: Final = frozenset(
    "\u115f\u1160\u3164\uffa0"  # Hangul fillers
    "\u2800"  # braille pattern blank
    "\u2028\u2029"  # line and paragraph separators
    "\u034f"  # combining grapheme joiner
    "\u17b4\u17b5"  # Khmer inherent vowels
)
_JOINERS: Final = frozenset("\u200c\u200d")  # ZWNJ, ZWJ: needed by emoji and some scripts
_DIRECTION_MARKS: Final = frozenset("\u200e\u200f\u061c")  # LRM, RLM, ALM: for RTL text
# Above Latin Extended-B: a joiner between two such characters (emoji, Indic, Persian)
# does a job; next to a Latin letter it only hides.
_LATIN_END: Final = 0x24F


def _is_variation_selector(ch: str) -> bool:
    c = ord(ch)
    return 0xFE00 <= c <= 0xFE0F or 0xE0100 <= c <= 0xE01EF


def _hidden_index(value: str) -> int | None:
    last = len(value) - 1
    for i, ch in enumerate(value):
        if ch in _INVISIBLE:
            return i
        if unicodedata.category(ch) == "Cf":
            before = i > 0 and ord(value[i - 1]) > _LATIN_END
            after = i < last and ord(value[i + 1]) > _LATIN_END
            if ch in _JOINERS and before and after:
                continue
            if ch in _DIRECTION_MARKS and (before or after):
                continue
            return i
        if _is_variation_selector(ch) and (
                i == 0 or unicodedata.category(value[i - 1]).startswith("L")):
            return i
    return None


def hidden_char(value: str) -> str | None:
    """The first invisible or format character of a display name or personal message
    (None if there is none). Allowed: a joiner between two non-Latin characters (emoji
    sequences, Indic and Persian script), a direction mark next to one (Hebrew, Arabic),
    and a variation selector after a non-letter (emoji presentation, keycaps)."""
    i = _hidden_index(value)
    return None if i is None else value[i]


def without_hidden(value: str) -> str:
    """``value`` without the characters :func:`hidden_char` refuses (for names stored
    before they were refused)."""
    while (i := _hidden_index(value)) is not None:
        value = value[:i] + value[i + 1:]
    return value


def describe_char(ch: str) -> str:
    """``U+200B ZERO WIDTH SPACE``: how an error names a character nobody can see."""
    return f"U+{ord(ch):04X} {unicodedata.name(ch, 'unnamed')}"


# The common look-alikes of Latin letters (Unicode TR39's confusables.txt, the part that
# matters for names), mapped to the letter they pass for. Capitals are mapped before
# case folding (Cyrillic В folds to в, which looks like no Latin letter), small letters
# after. I, l, 1, | and i all become l, and O and 0 become o: a skeleton only has to be
# equal for names that look alike, so it may be coarser than what the eye tells apart.
_LOOKALIKES: Final = str.maketrans({
    # Latin and digits
    "I": "l", "i": "l", "1": "l", "|": "l", "ı": "l", "ɩ": "l", "ȷ": "j", "ɑ": "a",
    "ɡ": "g", "0": "o", "ʀ": "r",
    # Cyrillic
    "А": "a", "В": "b", "Е": "e", "К": "k", "М": "m", "Н": "h", "О": "o", "Р": "p",
    "С": "c", "Т": "t", "Х": "x", "У": "y", "І": "l", "Ј": "j", "Ѕ": "s", "Ү": "y",
    "Ԛ": "q", "Ԝ": "w", "Ӏ": "l", "Ԁ": "d", "Һ": "h",
    "а": "a", "е": "e", "о": "o", "р": "p", "с": "c", "у": "y", "х": "x", "і": "l",
    "ј": "j", "ѕ": "s", "ԁ": "d", "һ": "h", "ӏ": "l", "ԛ": "q", "ԝ": "w", "ү": "y",
    "к": "k", "ь": "b",
    # Greek
    "Α": "a", "Β": "b", "Ε": "e", "Ζ": "z", "Η": "h", "Ι": "l", "Κ": "k", "Μ": "m",
    "Ν": "n", "Ο": "o", "Ρ": "p", "Τ": "t", "Υ": "y", "Χ": "x",
    "α": "a", "ο": "o", "ρ": "p", "ν": "v", "ι": "l", "κ": "k", "υ": "u", "χ": "x",
    "γ": "y",
    # Armenian
    "օ": "o", "ս": "u", "ց": "g", "հ": "h", "ո": "n", "զ": "q",
})
# Letter pairs that pass for one letter.
_LOOKALIKE_PAIRS: Final = (("rn", "m"), ("vv", "w"))
_HANDLE_SEPARATORS: Final = str.maketrans("", "", "_.- ")


def skeleton(value: str) -> str:
    """A name reduced to what it looks like, after Unicode TR39's skeleton: equal
    skeletons mean names a reader may take for each other ("Аlice" with a Cyrillic А,
    "Alice\u200b", "ＡＬＩＣＥ" and "AIice" all give "allce").

    Compatibility forms are unfolded (fullwidth, mathematical letters, ligatures),
    accents and zero-width characters dropped, blank-looking ones made spaces,
    look-alike letters mapped to the Latin ones, case folded, and runs of spaces made
    one space."""
    decomposed = unicodedata.normalize("NFKD", value)
    # Blank-looking characters (U+3164, U+2800, …) count as the space they pass for.
    kept = "".join(" " if ch in _INVISIBLE else ch for ch in decomposed
                   if unicodedata.category(ch) not in ("Mn", "Me", "Cf", "Cc"))
    folded = kept.translate(_LOOKALIKES).casefold().translate(_LOOKALIKES)
    for pair, letter in _LOOKALIKE_PAIRS:
        folded = folded.replace(pair, letter)
    return " ".join(folded.split())


def handle_skeleton(name: str) -> str:
    """The skeleton of a handle (or a name compared with handles), separators left out:
    ``smarty_bot``, ``Smartyb0t`` and ``smarty.bot`` all look like ``smartybot``."""
    return skeleton(name).translate(_HANDLE_SEPARATORS)


# --- presence ------------------------------------------------------------------------


class Status(StrEnum):
    ONLINE = "online"
    BUSY = "busy"
    AWAY = "away"
    BRB = "brb"
    PHONE = "phone"
    LUNCH = "lunch"
    INVISIBLE = "invisible"
    # Only ever sent by the server: how others see an invisible or signed-out user.
    OFFLINE = "offline"


CLIENT_STATUSES: Final = frozenset(s.value for s in Status if s is not Status.OFFLINE)
# A user's own sessions see their real status, ``invisible`` included.
SERVER_STATUSES: Final = frozenset(s.value for s in Status)

STATUS_LABELS: Final = {
    Status.ONLINE: "Online",
    Status.BUSY: "Busy",
    Status.AWAY: "Away",
    Status.BRB: "Be Right Back",
    Status.PHONE: "On the Phone",
    Status.LUNCH: "Out to Lunch",
    Status.INVISIBLE: "Appear Offline",
    Status.OFFLINE: "Offline",
}


def public_status(status: str) -> str:
    """What a watcher sees: an invisible user looks offline."""
    return Status.OFFLINE.value if status == Status.INVISIBLE else status


# --- message kinds, contact ops ------------------------------------------------------


class MsgKind(StrEnum):
    TEXT = "text"
    NUDGE = "nudge"


class ChangeKind(StrEnum):
    """What a change entry (``msg.change``, an extension) does to the message it targets."""

    EDIT = "edit"
    DELETE = "delete"
    REACT = "react"
    UNREACT = "unreact"


class ContactOp(StrEnum):
    ADD = "add"
    REMOVE = "remove"
    BLOCK = "block"
    UNBLOCK = "unblock"
    ADDED_YOU = "added_you"  # server → client only


CLIENT_CONTACT_OPS: Final = frozenset(op.value for op in ContactOp if op is not ContactOp.ADDED_YOU)


class MemberOp(StrEnum):
    JOIN = "join"
    LEAVE = "leave"


# --- errors and closes ---------------------------------------------------------------


class ErrorCode(StrEnum):
    BAD_FRAME = "bad_frame"
    HELLO_REQUIRED = "hello_required"
    UNSUPPORTED_VERSION = "unsupported_version"
    NAME_INVALID = "name_invalid"
    NAME_TAKEN = "name_taken"
    BAD_TOKEN = "bad_token"
    UNKNOWN_TYPE = "unknown_type"
    TOO_LONG = "too_long"
    RATE_LIMITED = "rate_limited"
    NOT_MEMBER = "not_member"
    NO_SUCH_ROOM = "no_such_room"
    NO_SUCH_USER = "no_such_user"
    BLOCKED = "blocked"
    FORBIDDEN = "forbidden"
    INTERNAL = "internal"


class CloseCode(IntEnum):
    GOING_AWAY = 1001
    UNSUPPORTED_DATA = 1003
    MESSAGE_TOO_BIG = 1009
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013
    HELLO_TIMEOUT = 4001
    NAME_TAKEN = 4002
    BAD_TOKEN = 4003
    UNSUPPORTED_VERSION = 4004
    ABUSE = 4008


# The errors after which the server closes the connection, and with which code.
FATAL_HELLO_ERRORS: Final = {
    ErrorCode.NAME_TAKEN: CloseCode.NAME_TAKEN,
    ErrorCode.BAD_TOKEN: CloseCode.BAD_TOKEN,
    ErrorCode.UNSUPPORTED_VERSION: CloseCode.UNSUPPORTED_VERSION,
}
# The close codes that refuse the identity: reconnecting cannot help.
FATAL_CLOSES: Final = frozenset(FATAL_HELLO_ERRORS.values())
# The answers to ``hello`` that no retry mends (every node of a server says the same):
# the fatal ones above, a handle that breaks the rules, and ``forbidden`` (registration
# closed, or a bad invite). A client stops instead of trying again.
FINAL_HELLO_REFUSALS: Final = frozenset(FATAL_HELLO_ERRORS) | {
    ErrorCode.NAME_INVALID, ErrorCode.FORBIDDEN,
}


# Which of the server's token buckets (``welcome.limits.rates`` names them) a client frame
# spends from; frames not listed are not rate limited (``hello``: one per connection).
# The server charges by it and the SDK paces by it: one table for both.
# Per-user buckets (shared by all of a user's sessions) that every frame of a session
# bucket spends from, whoever it goes to: which session buckets each one covers. The
# server advertises them in welcome.limits.user_rates; a client paces each covered kind
# by the tighter of the two. (The server's other per-user buckets, "stranger" and
# "room", apply only to some frames — DMs to users who have not listed the sender, joins
# that make a room — so a client learns them from a refusal's retry_ms.)
USER_RATE_COVERS: Final[dict[str, tuple[str, ...]]] = {
    "say": ("say", "nudge"),
    "contact": ("contact",),
    "typing": ("typing",),
    "presence": ("presence",),
    "search": ("search",),
}

RATE_KIND: Final[dict[str, str]] = {
    "say": "say",
    "nudge": "nudge",
    "typing": "typing",
    "presence": "presence",
    "join": "join",
    "leave": "join",
    "history": "history",
    "read": "history",
    "contact": "contact",
    "members": "history",
    # Message changes (an extension) spend from the say bucket: each is a stored entry.
    "edit": "say",
    "delete": "say",
    "react": "say",
    "unreact": "say",
    "moderators": "contact",
    "search": "search",
}


# --- mentions (an extension) ---------------------------------------------------------

# ``@handle`` not glued to a word before it (so "me@example.org" mentions nobody). The
# handle rule's characters include ``.`` and ``-``, which also end sentences: see
# ``mentioned_names``.
_MENTION_RE: Final = re.compile(r"(?<![\w@])@([A-Za-z0-9][A-Za-z0-9_.\-]{1,23})")


def mentioned_names(text: str, is_member: Callable[[str], bool]) -> list[str]:
    """The lower-cased handles ``text`` mentions as ``@handle`` (those ``is_member``
    accepts), in order, once each.

    A candidate ends where the handle characters end; as "@bob." at the end of a
    sentence is usually bob, a candidate that is no member is tried again with its
    trailing ``.``/``-``/``_`` stripped.
    """
    if "@" not in text:
        return []
    out: list[str] = []
    for match in _MENTION_RE.finditer(text):
        full = normalize_name(match.group(1))
        for name in (full, full.rstrip("._-")):
            if is_valid_name(name) and is_member(name):
                if name not in out:
                    out.append(name)
                break
    return out
