"""``SqliteStore``'s searches: the index file's answers (``searchindex.py``), read with
the database's committed rows beside them.

A search runs on the index's own read connection, on the event-loop thread, with the
database attached read-only: it sees only committed messages, never the open batch.
Each hit is checked against the message as it is now (its words, its hidden mark): the
index may lag behind an edit or a delete, or hold a room that changed while the
server was stopped until the indexer's start-up check has run.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path

from cfm_common.frames import StoredMsg
from cfm_server.store.base import StoreError
from cfm_server.store.searchindex import SearchIndex
from cfm_server.store.searchwords import MAX_POSITION, fts5_query, parse_position, words_of
from cfm_server.store.sqlite_reads import MESSAGE_COLUMNS, _stored

# FTS5 is the outer loop, key descending, so the LIMIT stops the walk; the rooms come as
# one JSON array (a user may be in hundreds of rooms).
_SEARCH = (
    "SELECT f.rowid, " + ", ".join(f"m.{c.strip()}" for c in MESSAGE_COLUMNS.split(","))
    + " FROM docs_fts f"
    " CROSS JOIN docs d ON d.key = f.rowid"
    " CROSS JOIN cfm.messages m ON m.room = d.room AND m.seq = d.seq"
    " WHERE docs_fts MATCH ? AND f.rowid < ?"
    " AND d.room IN (SELECT value FROM json_each(?))"
    " AND (m.hidden IS NULL OR m.sender = ?) AND m.deleted IS NULL"
    " ORDER BY f.rowid DESC LIMIT ?"
)


class SqliteSearch:
    """The ``Store`` search methods, for SqliteStore (``_search`` is None when the
    server runs without the index)."""

    path: Path
    _search: SearchIndex | None

    @property
    def searchable(self) -> bool:
        return self._search is not None

    def check_search_cursor(self, before: str) -> None:
        parse_position(before)

    def search(self, reader: str, rooms: Collection[str], words: Sequence[str],
               before: str | None, limit: int) -> list[tuple[str, StoredMsg]]:
        index = self._search
        if index is None:
            raise StoreError("this server keeps no search index")
        top = MAX_POSITION if before is None else parse_position(before)
        if limit <= 0 or not words or not rooms:
            return []
        params_rooms = json.dumps(list(rooms))
        query = fts5_query(list(words))
        wanted = set(words)
        found: list[tuple[str, StoredMsg]] = []
        while len(found) < limit:
            want = limit - len(found)
            try:
                rows = index.query(_SEARCH, (query, top, params_rooms, reader, want))
            except sqlite3.OperationalError as e:
                if str(e).startswith("fts5:"):
                    # A word FTS5's tokenizer splits where ours does not (a newer Unicode
                    # letter): a phrase this index cannot hold. Nothing found, not internal.
                    return []
                raise StoreError(f"{index.path}: search failed: {e}") from e
            except sqlite3.Error as e:
                raise StoreError(f"{index.path}: search failed: {e}") from e
            for row in rows:
                msg = _stored(row[1:])
                if wanted <= set(words_of(msg.text)):  # as it is now, not as indexed
                    found.append((str(row[0]), msg))
            if len(rows) < want:
                break
            top = rows[-1][0]
        return found

    def search_behind(self, rooms: Mapping[str, int]) -> int:
        index = self._search
        return 0 if index is None else index.behind(rooms)

    def when_indexed(self, rooms: Mapping[str, int], callback: Callable[[], None],
                     timeout_s: float) -> None:
        index = self._search
        if index is None:
            callback()
        else:
            index.when_indexed(rooms, callback, timeout_s)
