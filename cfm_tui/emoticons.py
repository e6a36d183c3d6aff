"""MSN Messenger's text emoticons, shown as emoji.

Codes are matched case-insensitively, as MSN did (``(h)`` and ``(H)``); the ones that end
in a letter (``:D``, ``:P``) only as whole tokens, so that ``a:Dog`` stays as typed.
"""

from __future__ import annotations

import re

EMOTICONS: dict[str, str] = {
    ":)": "🙂",
    ":-)": "🙂",
    ":(": "🙁",
    ":-(": "🙁",
    ":D": "😃",
    ":-D": "😃",
    ";)": "😉",
    ";-)": "😉",
    ":P": "😛",
    ":-P": "😛",
    ":O": "😮",
    ":-O": "😮",
    ":S": "😕",
    ":|": "😐",
    ":'(": "😢",
    ":@": "😠",
    "(H)": "😎",
    "(L)": "💖",
    "(U)": "💔",
    "(Y)": "👍",
    "(N)": "👎",
    "(A)": "😇",
    "(6)": "😈",
    "(K)": "💋",
    "(F)": "🌹",
    "(*)": "⭐",
    "(C)": "☕",
    "(B)": "🍺",
    "(^)": "🎂",
    "(G)": "🎁",
    "(E)": "📧",
    "(S)": "🌙",
    "(#)": "🌞",
    "(R)": "🌈",
    "(Z)": "👦",
    "(X)": "👧",
    "(I)": "💡",
    "(8)": "🎵",
}

_LOOKUP = {code.upper(): emoji for code, emoji in EMOTICONS.items()}
# Longest codes first so ":-)" wins over ":-" prefixes; letters match either case.
_PATTERN = re.compile(
    "|".join(re.escape(code) for code in sorted(EMOTICONS, key=len, reverse=True)),
    re.IGNORECASE,
)


def _is_word_char(ch: str) -> bool:
    return bool(ch) and (ch.isalnum() or ch in "_/")


def replace_emoticons(text: str) -> str:
    """``text`` with every emoticon code replaced by its emoji.

    A code that ends in a letter (``:D``, ``(Y)`` does not) must stand alone: no word
    character right before or after it, so "a:Dog" and "x:P1" stay as typed.
    """

    def substitute(match: re.Match[str]) -> str:
        start, end = match.span()
        code = match.group(0)
        before = text[start - 1] if start > 0 else ""
        after = text[end] if end < len(text) else ""
        ends_in_letter = code[-1].isalpha()
        if ends_in_letter and (_is_word_char(before) or _is_word_char(after)):
            return code
        return _LOOKUP[code.upper()]

    return _PATTERN.sub(substitute, text)
