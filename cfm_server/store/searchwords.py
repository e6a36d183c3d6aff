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

# What a search index file holds beside its ``docs`` table (single-node's indexer process
# and a cluster node's in-memory index alike): each document's text, and an FTS5 index
# over it kept in step by triggers, so that deleting or updating a text re-indexes it.
# A document's key is its message's ts << KEY_SHIFT plus a counter within that
# millisecond: newest first is key order.
KEY_SHIFT = 20  # up to 2**20 messages in one millisecond; ts up to 2**43 (year 2248)
MAX_TS = 2**43 - 1
TEXT_INDEX_SCHEMA = """
CREATE TABLE texts (key INTEGER PRIMARY KEY, text TEXT NOT NULL);
CREATE VIRTUAL TABLE docs_fts USING fts5(text, content='texts', content_rowid='key',
                                         detail='none', columnsize=0);
CREATE TRIGGER docs_delete AFTER DELETE ON docs BEGIN
    DELETE FROM texts WHERE key = old.key;
END;
CREATE TRIGGER texts_insert AFTER INSERT ON texts BEGIN
    INSERT INTO docs_fts (rowid, text) VALUES (new.key, new.text);
END;
CREATE TRIGGER texts_delete AFTER DELETE ON texts BEGIN
    INSERT INTO docs_fts (docs_fts, rowid, text) VALUES ('delete', old.key, old.text);
END;
CREATE TRIGGER texts_update AFTER UPDATE OF text ON texts BEGIN
    INSERT INTO docs_fts (docs_fts, rowid, text) VALUES ('delete', old.key, old.text);
    INSERT INTO docs_fts (rowid, text) VALUES (new.key, new.text);
END;
"""


class BadCursor(ValueError):
    """A search cursor (``before``) this store never gave out."""

_WORD = re.compile(r"[^\W_]+")


def words_of(text: str) -> list[str]:
    """The words of ``text``, folded: lower case, without combining marks."""
    if text.isascii():
        # No combining marks, and NFKD and casefold are lower(): 2-3x faster, and a
        # search checks every hit's text again with it (4 KB texts: 0.28 -> 0.11 ms).
        return _WORD.findall(text.lower())
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
