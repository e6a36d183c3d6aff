"""What search takes as words: runs of letters and digits, in any case, accents aside.

This follows SQLite FTS5's default ``unicode61`` tokenizer (letters, digits and private
use characters make tokens; case is folded; diacritics are removed), so the memory
store's plain scan and the SQLite index find the same messages for ordinary text.
Everything else (quotes, ``*``, ``-``, ``NEAR``'s brackets) separates words: a user's
text is never read as FTS5 query syntax.
"""

from __future__ import annotations

import re
import unicodedata


class BadCursor(ValueError):
    """A search cursor (``before``) this store never gave out."""

_WORD = re.compile(r"[^\W_]+")


def words_of(text: str) -> list[str]:
    """The words of ``text``, folded: lower case, without combining marks."""
    folded = unicodedata.normalize("NFKD", text.casefold())
    plain = "".join(c for c in folded if not unicodedata.combining(c))
    return _WORD.findall(plain)


def fts5_query(words: list[str] | tuple[str, ...]) -> str:
    """An FTS5 MATCH expression requiring every word: each one a quoted string, so no
    word is ever an operator (AND, OR, NOT, NEAR) or a column filter."""
    return " ".join('"' + w.replace('"', '""') + '"' for w in words)


MAX_POSITION = 2**63 - 1


def parse_position(before: str) -> int:
    """A cursor the single-node stores give out: a message's place in the order they
    were stored, in ASCII digits. Anything else raises BadCursor."""
    if not (before.isascii() and before.isdigit() and len(before) <= 19):
        raise BadCursor(before)
    position = int(before)
    if position > MAX_POSITION:
        raise BadCursor(before)
    return position
