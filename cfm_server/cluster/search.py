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
``read.lua`` (the broker's ``_read``: a page of ``READ_PAGE`` entries per call, the
rooms' calls in one pipeline, each entry as it is now — an edited message with its
current text, a deleted one as a tombstone, a hidden one marked) and writes each page
to the index in one transaction. An edit
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
page of ``READ_PAGE`` entries holds the loop about 10 ms) and at most ``LOOP_SHARE`` of
its time: unlike single-node's indexer it is not a process of its own, so under more
messages than that share indexes the index falls behind (left: docs/cluster.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import msgpack

from cfm_common.frames import StoredMsg
from cfm_server.cluster.errors import ClusterError
from cfm_server.cluster.scripts import HIDDEN_SUFFIX
from cfm_server.store.searchwords import (
    KEY_SHIFT,
    MAX_POSITION,
    MAX_TS,
    TEXT_INDEX_SCHEMA,
    fts5_query,
    parse_position,
    words_of,
)

if TYPE_CHECKING:
    from cfm_server.cluster.broker import Broker

log = logging.getLogger(__name__)

PASS_INTERVAL_S = 0.05  # at most one pass this often
# The share of the event loop's time indexing may take while it is behind (decoding the
# entries and FTS5): after a pass that took t seconds of it, the next waits at least
# t * (1 - SHARE) / SHARE. Under a load of more messages than that share indexes, the
# index falls behind (searches say ``behind``) rather than the sessions.
LOOP_SHARE = 0.25
PASS_BUDGET = 2_000  # entries read into one pass at most
# Entries per read.lua call, and so per transaction of the index: indexing one takes the
# event loop for about 50 µs (its decoding included), so a page holds the loop ~10 ms.
READ_PAGE = 200
RETRY_S = 1.0  # after a pass failed (Redis out of reach)
POLL_S = 0.05  # how often waiting searches look at the watermarks again


SCHEMA = f"""
CREATE TABLE docs (
    key INTEGER PRIMARY KEY,
    room TEXT NOT NULL,
    seq INTEGER NOT NULL,
    sender TEXT NOT NULL,
    hidden INTEGER NOT NULL
);
CREATE UNIQUE INDEX docs_by_message ON docs (room, seq);
{TEXT_INDEX_SCHEMA}"""

# FTS5 the outer loop, key descending, so the LIMIT stops the walk (as single-node).
_SEARCH = (
    "SELECT f.rowid, d.room, d.seq FROM docs_fts f"
    " CROSS JOIN docs d ON d.key = f.rowid"
    " WHERE docs_fts MATCH ? AND f.rowid < ?"
    " AND d.room IN (SELECT value FROM json_each(?))"
    " AND (d.hidden = 0 OR d.sender = ?)"
    " ORDER BY f.rowid DESC LIMIT ?"
)
_INSERT_DOC = (
    "INSERT INTO docs (key, room, seq, sender, hidden)"
    " SELECT coalesce((SELECT max(key) + 1 FROM docs WHERE key BETWEEN ? AND ?), ?),"
    " ?, ?, ?, ?"
)

_HIDDEN = HIDDEN_SUFFIX.encode()


class Entry(NamedTuple):
    """What the index takes from a stream entry."""

    seq: int
    sender: str
    text: str
    ts: int
    kind: str
    change: str | None
    target: int | None
    hidden: bool
    deleted: bool


def entry_of(seq: bytes, fields: dict[bytes, bytes]) -> Entry:
    """A ``read.lua`` entry as the index needs it. Not the codec's checked decoding of a
    frame (``broker._stored``): the entry was written by a node's append script, and
    this is half the cost of indexing it."""
    frame: dict[str, Any] = msgpack.unpackb(fields[b"m"], raw=False)
    text = fields.get(b"t", b"").decode() if b"e" in fields else frame.get("text", "")
    hidden = fields.get(b"h") == b"1" or fields.get(b"o", b"").endswith(_HIDDEN)
    return Entry(int(seq.split(b"-", 1)[0]), frame.get("from", ""), text or "",
                 frame.get("ts", 0), frame.get("kind", ""), frame.get("change"),
                 frame.get("target"), hidden, bool(frame.get("deleted")))


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
        self.busy_s = 0.0  # loop time spent indexing since the start
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

    def forget(self, room: str) -> None:
        """``room``'s history restarted in Redis (a new epoch: its seqs start again): drop
        what was indexed of it; the next note indexes it from the start."""
        self.marks.pop(room, None)
        self.todo.pop(room, None)
        self.conn.execute("DELETE FROM docs WHERE room = ?", (room,))

    # --- the passes ------------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            started, busy = loop.time(), self.busy_s
            try:
                await self._pass()
            except (ClusterError, sqlite3.Error) as exc:
                log.warning("search index: a pass failed (%s); trying again in %.0f s",
                            exc, RETRY_S)
                self._wake.set()
                await asyncio.sleep(RETRY_S)
                continue
            self._answer_waiters()
            if self.todo:
                self._wake.set()
            spent = self.busy_s - busy
            await asyncio.sleep(max(self.interval_s - (loop.time() - started),
                                    spent * (1 - LOOP_SHARE) / LOOP_SHARE))

    async def _pass(self) -> None:
        """Read up to ``budget`` entries of the noted rooms and index them: one page of
        each room at a time, the rooms' reads in one pipeline (the batcher's), one
        transaction per page. A failed read leaves its room noted."""
        budget = self.budget
        while budget > 0 and self.todo:
            work: list[tuple[str, int, int]] = []  # room, mark, how many to read
            for room, top in self.todo.items():
                mark = self.marks.get(room, 0)
                count = min(READ_PAGE, budget, top - mark)
                if count > 0:
                    work.append((room, mark, count))
                    budget -= count
                if budget <= 0:
                    break
            pages = await asyncio.gather(*(self.broker._read(room, after=mark, before=None,
                                                             limit=count)
                                           for room, mark, count in work),
                                         return_exceptions=True)
            failed: BaseException | None = None
            for (room, mark, count), page in zip(work, pages, strict=True):
                if isinstance(page, BaseException):
                    failed = page
                    continue
                if self.marks.get(room, 0) != mark:
                    continue  # forgotten meanwhile (a new epoch): this page is stale
                if page:
                    self._index(room, page)
                    self.indexed += len(page)
                # read.lua read exactly (mark, mark + count]: the room's head is at least
                # the noted seq. What it lacks there was trimmed by retention (or the
                # room restarted under a new epoch): nothing to index.
                self.marks[room] = mark + count
                if page:
                    await asyncio.sleep(0)  # the sessions' turn between pages
            for room in [r for r, top in self.todo.items() if self.marks.get(r, 0) >= top]:
                del self.todo[room]
            if failed is not None:
                raise failed

    def _index(self, room: str, entries: list[tuple[bytes, dict[bytes, bytes]]]) -> None:
        """One page of ``read.lua``'s entries, decoded here (timed with the indexing:
        ``LOOP_SHARE``), in one transaction."""
        started = time.perf_counter()
        conn = self.conn
        conn.execute("BEGIN")
        try:
            for seq, fields in entries:
                m = entry_of(seq, fields)
                if m.change == "edit" and m.target is not None and not m.hidden:
                    conn.execute("UPDATE texts SET text = ? WHERE key = (SELECT key FROM"
                                 " docs WHERE room = ? AND seq = ?)", (m.text, room, m.target))
                elif m.change == "delete" and m.target is not None:
                    conn.execute("DELETE FROM docs WHERE room = ? AND seq = ?",
                                 (room, m.target))
                elif (m.change is None and m.kind == "text" and m.text and not m.deleted
                      and isinstance(m.ts, int) and 0 <= m.ts <= MAX_TS):
                    self._insert(room, m)
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.rollback()
            raise
        finally:
            self.busy_s += time.perf_counter() - started

    def _insert(self, room: str, m: Entry) -> None:
        """Two statements: the key is found in the insert (the next free one in the
        message's millisecond), the text goes in under it. An entry read again after a
        failed pass is never indexed twice: its page's transaction and the room's mark
        move together."""
        base = m.ts << KEY_SHIFT
        cur = self.conn.execute(_INSERT_DOC, (base, base + (1 << KEY_SHIFT) - 1, base, room,
                                              m.seq, m.sender, int(bool(m.hidden))))
        self.conn.execute("INSERT INTO texts (key, text) VALUES (?, ?)",
                          (cur.lastrowid, m.text))

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
