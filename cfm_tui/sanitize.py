"""Make untrusted text (messages, names, personal messages) safe to show and to emit.

Everything a peer sends reaches the screen through Rich ``Text`` / Textual ``Content``
objects, so markup is never interpreted; what is left to do here is to remove the
characters a terminal would act on: C0/C1 controls (ESC starts every escape sequence),
DEL and the bidi controls that reorder what follows them.
"""

from __future__ import annotations

import unicodedata

_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f")
TAB_WIDTH = 4


def _is_control(ch: str) -> bool:
    return unicodedata.category(ch) == "Cc" or ch in _BIDI_CONTROLS


def clean_line(text: str) -> str:
    """One line of text: every control character removed (line breaks become spaces)."""
    text = text.replace("\r\n", " ").replace("\n", " ").replace("\r", " ")
    text = text.replace("\t", " ")
    return "".join(ch for ch in text if not _is_control(ch))


def clean_text(text: str) -> str:
    """Message text: line breaks kept, tabs expanded, every other control removed."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\t", " " * TAB_WIDTH)
    return "".join(ch for ch in text if ch == "\n" or not _is_control(ch))


def for_escape_sequence(text: str, limit: int = 200) -> str:
    """Text that goes *inside* an escape sequence (an OSC 9 notification).

    Besides control characters, ``;`` is harmless but ``\\x9c`` (C1 string terminator)
    and ESC would end or hijack the sequence; ``clean_line`` removes both. The result is
    cut to ``limit`` characters because terminals truncate or reject long OSC payloads.
    """
    cleaned = clean_line(text)
    return cleaned[:limit]
