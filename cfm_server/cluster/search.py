"""Search on a cluster node: the node's own FTS5 index, fed from the room streams off the
message path, its hits checked against Redis (docs/cluster.md, "Search on a cluster").

Which rooms: those the node follows. A node subscribes to every room of each user
signed in on it before that user's hello is answered, and a user can only search rooms
they are a member of, so the rooms a node can be asked about are always rooms it
follows. Each one is indexed from the moment it is first followed (its stream read from
the index's watermark up: the start-up catch-up), then kept current as its messages are
delivered to the node (``note``). A room this node never follows costs it nothing; one it
stops following keeps its entries, and is caught up from its watermark when followed
again.

How: the delivery only notes ``room -> seq`` (a dict assignment on the message path);
a pass, at most every ``PASS_INTERVAL_S``, reads each noted room's new entries with
``read.lua`` (the broker's ``history``: a page of ``READ_PAGE`` entries per call, each
entry as it is now — an edited message with its current text, a deleted one as a
tombstone, a hidden one marked) and writes them to the index in one transaction. An edit
entry replaces its target's text in the index, a delete entry takes the target out
(the same rule as single-node's ``searchindexer._CHANGES``); a hidden edit changed
nothing and changes nothing here.

A search reads the index (the rooms passed in, the reader's hidden rule in SQL), then
reads each hit's entry from Redis again (one ``read.lua`` of one entry per hit, pipelined
by the batcher): a hit is kept only if it is still there (not deleted, not trimmed by
retention), still holds every word (an edit the index has not passed yet) and the reader
may see it. The rules of which rooms stay in ``domain/search.py``.

The index lives in memory (SQLite ``:memory:``), not in the data dir: a node's index is
rebuilt from Redis at each start for the rooms it follows, so there is no file to keep
in step with streams that may have been rewritten, trimmed or restarted (a new epoch)
while the node was stopped. The cost is that catch-up at each start (docs/cluster.md).

The indexing runs on the event loop, in passes of at most ``PASS_BUDGET`` entries (a
pass of 2,000 short lines is a few milliseconds of FTS5): unlike single-node's indexer
it is not a process of its own (left: docs/cluster.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import TYPE_CHECKING

from cfm_common.frames import StoredMsg
from cfm_server.cluster.errors import ClusterError
from cfm_server.store.searchwords import MAX_POSITION, fts5_query, parse_position, words_of

if TYPE_CHECKING:
    from cfm_server.cluster.broker import Broker

log = logging.getLogger(__name__)

PASS_INTERVAL_S = 0.05  # at most one pass this often: each is one transaction
PASS_BUDGET = 5_000  # entries read into one pass at most (the loop's turn stays short)
READ_PAGE = 500  # entries per read.lua call
RETRY_S = 1.0  # after a pass failed (Redis out of reach)
POLL_S = 0.05  # how often waiting searches look at the watermarks again

KEY_SHIFT = 20  # as single-node's index: key = ts << 20 + a counter in that millisecond
MAX_TS = 2**43 - 1

SCHEMA = """
CREATE TABLE docs (
    key INTEGER PRIMARY KEY,
    room TEXT NOT NULL,
    seq INTEGER NOT NULL,
    sender TEXT NOT NULL,
    hidden INTEGER NOT NULL
);
CREATE UNIQUE INDEX docs_by_message ON docs (room, seq);
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

# FTS5 the outer loop, key descending, so the LIMIT stops the walk (as single-node).
_SEARCH = (
    "SELECT f.rowid, d.room, d.seq FROM docs_fts f"
    " CROSS JOIN docs d ON d.key = f.rowid"
    " WHERE docs_fts MATCH ? AND f.rowid < ?"
    " AND d.room IN (SELECT value FROM json_each(?))"
    " AND (d.hidden = 0 OR d.sender = ?)"
    " ORDER BY f.rowid DESC LIMIT ?"
)


class ClusterSearch:
    """One node's index. ``note`` from the node (a room followed, a message delivered);
    ``search``/``behind``/``when_indexed`` from the node's store (``NodeStore``)."""

    def __init__(self, broker: Broker, *, interval_s: float = PASS_INTERVAL_S,
                 budget: int = PASS_BUDGET) -> None:
        self.broker = broker
        self.interval_s = interval_s
        self.budget = budget
        self.conn = sqlite3.connect(":memory:", isolation_level=None)
        self.conn.executescript(SCHEMA)
        self.marks: dict[str, int] = {}  # room -> every entry up to here is indexed
        self.todo: dict[str, int] = {}  # room -> newest seq known to be stored
        self.indexed = 0  # entries read since the start (figures, tests)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._waiters: list[tuple[dict[str, int], Callable[[], None], float]] = []
        self._poll_handle: asyncio.Handle | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(),
                                                            name="cfm-cluster-search")

    async def close(self) -> None:
        if self._poll_handle is not None:
            self._poll_handle.cancel()
        self._waiters.clear()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.conn.close()

    # --- from the node (message path: a dict assignment) ---------------------------------

    def note(self, room: str, seq: int) -> None:
        """``room`` holds entries up to ``seq`` (a delivery, or a subscription's head)."""
        if seq > max(self.todo.get(room, 0), self.marks.get(room, 0)):
            self.todo[room] = seq
            self._wake.set()
        elif room not in self.marks:
            self.marks[room] = 0  # followed, nothing stored yet: in step

    # --- the passes ------------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            started = loop.time()
            try:
                await self._pass()
            except ClusterError as exc:
                log.warning("search index: reading the streams failed (%s); trying again "
                            "in %.0f s", exc, RETRY_S)
                self._wake.set()
                await asyncio.sleep(RETRY_S)
                continue
            self._answer_waiters()
            if self.todo:
                self._wake.set()
            await asyncio.sleep(max(0.0, self.interval_s - (loop.time() - started)))

    async def _pass(self) -> None:
        """Read up to ``budget`` entries of the noted rooms and index them, one
        transaction per room's page (a failed read leaves its room noted)."""
        budget = self.budget
        for room in list(self.todo):
            if budget <= 0:
                return
            top = self.todo[room]
            mark = self.marks.get(room, 0)
            while mark < top and budget > 0:
                page = await self.broker.history(room, after=mark,
                                                 limit=min(READ_PAGE, budget, top - mark))
                if not page:
                    # Nothing above the mark (trimmed, or a new epoch restarted the
                    # room lower): the room is in step as far as Redis goes.
                    mark = top
                else:
                    self._index(room, page)
                    mark = page[-1].seq
                    budget -= len(page)
                    self.indexed += len(page)
                self.marks[room] = mark
            if mark >= self.todo.get(room, 0):
                self.todo.pop(room, None)

    def _index(self, room: str, page: list[StoredMsg]) -> None:
        conn = self.conn
        conn.execute("BEGIN")
        try:
            for m in page:
                if m.change == "edit" and m.target is not None and not m.hidden:
                    conn.execute("UPDATE texts SET text = ? WHERE key = (SELECT key FROM"
                                 " docs WHERE room = ? AND seq = ?)", (m.text, room, m.target))
                elif m.change == "delete" and m.target is not None:
                    conn.execute("DELETE FROM docs WHERE room = ? AND seq = ?",
                                 (room, m.target))
                elif (m.change is None and m.kind == "text" and m.text and not m.deleted
                      and 0 <= m.ts <= MAX_TS):
                    self._insert(room, m)
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.rollback()
            raise

    def _insert(self, room: str, m: StoredMsg) -> None:
        conn = self.conn
        base = m.ts << KEY_SHIFT
        if conn.execute("SELECT 1 FROM docs WHERE room = ? AND seq = ?",
                        (room, m.seq)).fetchone():
            return  # read again after a failed pass
        top = conn.execute("SELECT max(key) FROM docs WHERE key BETWEEN ? AND ?",
                           (base, base + (1 << KEY_SHIFT) - 1)).fetchone()[0]
        key = base if top is None else top + 1
        conn.execute("INSERT INTO docs (key, room, seq, sender, hidden) VALUES (?, ?, ?, ?, ?)",
                     (key, room, m.seq, m.sender, int(bool(m.hidden))))
        conn.execute("INSERT INTO texts (key, text) VALUES (?, ?)", (key, m.text))

    # --- how far behind ----------------------------------------------------------------

    def behind(self, rooms: Mapping[str, int]) -> int:
        """How many entries up to each room's given seq the index has not read yet."""
        marks = self.marks
        return sum(max(0, seq - marks.get(room, 0)) for room, seq in rooms.items())

    def when_indexed(self, rooms: Mapping[str, int], callback: Callable[[], None],
                     timeout_s: float) -> None:
        """``callback()`` once ``behind(rooms)`` is 0, or after ``timeout_s``; once."""
        if self._task is None or not self.behind(rooms):
            callback()
            return
        for room, seq in rooms.items():
            self.note(room, seq)
        self._waiters.append((dict(rooms), callback, time.monotonic() + timeout_s))
        if self._poll_handle is None:
            self._poll_handle = asyncio.get_running_loop().call_later(POLL_S, self._poll)

    def _poll(self) -> None:
        self._poll_handle = None
        self._answer_waiters()
        if self._waiters:
            self._poll_handle = asyncio.get_running_loop().call_later(POLL_S, self._poll)

    def _answer_waiters(self) -> None:
        now = time.monotonic()
        waiting = []
        for entry in self._waiters:
            rooms, callback, deadline = entry
            if now >= deadline or not self.behind(rooms):
                callback()
            else:
                waiting.append(entry)
        self._waiters = waiting

    # --- searches ------------------------------------------------------------------------

    async def search(self, reader: str, rooms: Collection[str], words: Sequence[str],
                     before: str | None, limit: int) -> list[tuple[str, StoredMsg]]:
        """As ``Store.search``: the index's hits, each read again from Redis."""
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
                rows = self.conn.execute(_SEARCH, (query, top, params_rooms, reader,
                                                   want)).fetchall()
            except sqlite3.OperationalError as e:
                if str(e).startswith("fts5:"):
                    return []  # a word FTS5 splits where ours does not (as single-node)
                raise
            current = await asyncio.gather(*(self._current(room, seq)
                                              for _, room, seq in rows))
            for (key, _, _), msg in zip(rows, current, strict=True):
                if (msg is not None and not msg.deleted and msg.change is None
                        and (not msg.hidden or msg.sender == reader)
                        and wanted <= set(words_of(msg.text))):
                    found.append((str(key), msg))
            if len(rows) < want:
                break
            top = rows[-1][0]
        return found

    async def _current(self, room: str, seq: int) -> StoredMsg | None:
        page = await self.broker.history(room, after=seq - 1, limit=1)
        return page[0] if page and page[0].seq == seq else None
