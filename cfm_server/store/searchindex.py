"""The search index: a second SQLite file beside the database, kept by a thread of its own.

Why a separate file and a thread: indexing a message (FTS5's tokenizing, its segments and
merges) costs about as much as storing it. Done by triggers in the group commit's
transaction it halved the raw append rate and cost ``say`` 7-10 % (docs/performance.md,
"Search"). Here the write path only notes which rooms moved (a dict assignment per
``append``, handed over after each COMMIT); the thread reads the new rows from the
database through its own read-only connection and indexes them in batches, in
transactions of the index file only. SQLite releases the GIL while it works, and the
thread runs at the lowest CPU priority, so it takes the core the event loop does not use.

The file (``<db stem>.search<suffix>``, e.g. ``cfm.search.sqlite3``) holds only what can
be rebuilt from the database: deleting it costs a rebuild at the next start, nothing
else. It is not in backups. Its tables:

- ``docs``: one row per indexed message: its key, room and seq. The key is the
  message's ts in milliseconds shifted left 20 bits, plus a counter among messages of
  the same millisecond: newest first is key descending, which FTS5 walks natively and
  stops early under a LIMIT, whatever order the messages were indexed in (a catch-up
  goes room by room). Small rows, so that a search filtering hits by room reads few
  pages.
- ``texts``: each indexed message's text, by key: the external content FTS5 needs to
  take a message out again (SQLite 3.40 has no ``contentless_delete``), since the main
  database's text may be gone by then (a delete erases it).
- ``docs_fts``: FTS5 over ``texts.text`` (``detail=none``: which message holds which
  word, no positions; ``columnsize=0``: no per-message token counts, which only
  ranking would read), kept in step by triggers inside this file (a ``docs`` row
  deleted takes its text and its words with it).
- ``rooms``: each room's watermark: every message up to ``seq`` has been seen (indexed,
  or skipped as not text), and ``ts`` is the ts of the message at ``seq``, so a start can
  tell that the room is no longer what was indexed (a DM archived by ``cfm admin
  remove-user`` while the server was stopped, a restored backup).

Edits and deletes (issue 16) arrive as rows of their own in the room's sequence, naming
their target's seq: ``_CHANGES`` is where the indexer turns them into an update or a
removal of the target's ``docs`` row, in the same pass that indexes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from cfm_server.datadir import make_private_file, tighten
from cfm_server.store.base import StoreError

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE docs (
    key INTEGER PRIMARY KEY,
    room TEXT NOT NULL,
    seq INTEGER NOT NULL
);
CREATE UNIQUE INDEX docs_by_message ON docs (room, seq);
CREATE TABLE texts (
    key INTEGER PRIMARY KEY,
    text TEXT NOT NULL
);
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
CREATE TABLE rooms (
    room TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    ts INTEGER NOT NULL
) WITHOUT ROWID;
"""

KEY_SHIFT = 20  # up to 2**20 messages in one millisecond; ts up to 2**43 (year 2248)
MAX_TS = 2**43 - 1

# How often a busy server's new messages are indexed: one transaction of the index per
# pass, so the bigger the pass the fewer pages per message (the lesson of the triggers).
PASS_INTERVAL_S = 0.1
# Messages read into one pass at most: a catch-up of millions goes in steps this big,
# each its own transaction, so searches see it grow and a stop is never far.
PASS_BUDGET = 20_000
RETRY_S = 1.0  # after a pass failed (the index file unwritable, locked, full)

_KINDS_INDEXED = ("text",)

# One pass's new messages: those of each room in ``temp.todo`` (after, upto], keyed by ts
# (see the module docstring): the correlated max() finds keys an earlier pass gave in the
# same millisecond, row_number() orders this pass's own.
_INSERT_KEYS = f"""
INSERT INTO docs (key, room, seq)
SELECT (m.ts << {KEY_SHIFT})
       + coalesce((SELECT max(d.key) + 1 - (m.ts << {KEY_SHIFT}) FROM docs d
                   WHERE d.key BETWEEN (m.ts << {KEY_SHIFT})
                                   AND (m.ts << {KEY_SHIFT}) + {2**KEY_SHIFT - 1}), 0)
       + row_number() OVER (PARTITION BY m.ts ORDER BY m.room, m.seq) - 1,
       m.room, m.seq
FROM temp.todo t
CROSS JOIN cfm.messages m ON m.room = t.room AND m.seq > t.after AND m.seq <= t.upto
WHERE m.kind IN ({", ".join(repr(k) for k in _KINDS_INDEXED)}) AND m.text != ''
  AND m.ts BETWEEN 0 AND {MAX_TS}
"""
_INSERT_TEXTS = """
INSERT INTO texts (key, text)
SELECT d.key, m.text
FROM temp.todo t
CROSS JOIN docs d ON d.room = t.room AND d.seq > t.after AND d.seq <= t.upto
CROSS JOIN cfm.messages m ON m.room = d.room AND m.seq = d.seq
"""

# Edits and deletes (issue 16, h4's schema v4): rows of kind EDIT_KIND / DELETE_KIND whose
# TARGET_COLUMN names the seq they change. Run after the inserts in the same pass, only once
# the database has that column (``_changes_enabled``): an edit replaces its target's text
# (the trigger re-indexes it), a delete takes the target out of the index.
EDIT_KIND = "edit"
DELETE_KIND = "delete"
TARGET_COLUMN = "target"
_CHANGES = (
    f"""
    UPDATE texts SET text = e.text FROM (
        SELECT d.key, m.text, max(m.seq)
        FROM temp.todo t
        CROSS JOIN cfm.messages m ON m.room = t.room AND m.seq > t.after AND m.seq <= t.upto
        CROSS JOIN docs d ON d.room = m.room AND d.seq = m.{TARGET_COLUMN}
        WHERE m.kind = '{EDIT_KIND}' GROUP BY d.key) AS e
    WHERE texts.key = e.key
    """,
    f"""
    DELETE FROM docs WHERE (room, seq) IN (
        SELECT m.room, m.{TARGET_COLUMN}
        FROM temp.todo t
        CROSS JOIN cfm.messages m ON m.room = t.room AND m.seq > t.after AND m.seq <= t.upto
        WHERE m.kind = '{DELETE_KIND}')
    """,
)


_MARKS = """
INSERT OR REPLACE INTO rooms (room, seq, ts)
SELECT t.room, t.upto, m.ts FROM temp.todo t
CROSS JOIN cfm.messages m ON m.room = t.room AND m.seq = t.upto
"""


def index_path(db_path: Path) -> Path:
    """``cfm.sqlite3`` → ``cfm.search.sqlite3``, in the same directory."""
    return db_path.with_name(f"{db_path.stem}.search{db_path.suffix}")


def remove_index(db_path: Path) -> bool:
    """Delete the index file of ``db_path`` (with its -wal and -shm); whether there was
    one. A store opened without the index calls this: an index left from before would
    keep text that the deletes and edits made meanwhile never reach."""
    path = index_path(db_path)
    existed = path.exists()
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            path.with_name(path.name + suffix).unlink()
    return existed


class SearchIndex:
    """The index file of the database at ``db_path``, and the thread that keeps it.

    Used from the event loop: ``open``/``close``, ``note`` (after each COMMIT: rooms and
    their newest committed seq, and retention cuts), ``query`` (a search), ``behind`` and
    ``when_indexed`` (how far the index lags). The thread owns the writing connection.
    """

    def __init__(self, db_path: Path, *, busy_timeout_s: float = 2.0,
                 interval_s: float = PASS_INTERVAL_S, budget: int = PASS_BUDGET) -> None:
        self.db_path = db_path
        self.path = index_path(db_path)
        self._busy_timeout_s = busy_timeout_s
        self._interval_s = interval_s
        self._budget = budget
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reader: sqlite3.Connection | None = None  # the loop's, for searches
        self._thread: threading.Thread | None = None
        self._writer: sqlite3.Connection | None = None  # the thread's
        # Handed from the loop to the thread, under _lock: rooms whose messages up to the
        # seq are committed, and retention cuts (delete below the seq).
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = False
        self._noted: dict[str, int] = {}
        self._cuts: dict[str, int] = {}
        # Each room's watermark as of the last committed pass. Written by the thread (one
        # key at a time), read by the loop; None until the thread has read its file.
        self.indexed: dict[str, int] | None = None
        self._waiters: list[tuple[dict[str, int], Callable[[], None]]] = []
        self.last_error: str | None = None
        self._changes = False  # the database has edits and deletes (_CHANGES)

    # --- lifecycle (event loop) ---------------------------------------------------------

    def open(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._prepare_file()
        self._reader = self._connect(readonly=True)
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="cfm-search-index",
                                        daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the thread (a pass under way is interrupted: the next start redoes it)
        and close both connections, before the database's own connection closes: the
        last connection to close is the one that folds the WAL into the file."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stopping = True
            self._wake.set()
            writer = self._writer
            if writer is not None:
                with contextlib.suppress(sqlite3.Error):
                    writer.interrupt()
            thread.join()
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.close()
        self._waiters.clear()  # the server is stopping: their sessions are closing

    def _prepare_file(self) -> None:
        """The index file 0600 at the current version; one this cfm cannot use (another
        version, not SQLite) is deleted: it only ever holds a rebuildable copy. (No
        integrity check here: that reads the whole file, seconds for millions of
        messages, before the server may listen.)"""
        path = self.path
        if path.exists():
            try:
                conn = sqlite3.connect(path, isolation_level=None)
                try:
                    version = conn.execute("PRAGMA user_version").fetchone()[0]
                finally:
                    conn.close()
            except sqlite3.Error:
                version = -1
            if version != SCHEMA_VERSION:
                logger.warning("search index %s is unusable (version %s); rebuilding it",
                               path, version)
                remove_index(self.db_path)
        if path.exists():
            tighten(path)
        else:
            make_private_file(path)
        for suffix in ("-wal", "-shm"):
            tighten(path.with_name(path.name + suffix))
        try:
            conn = sqlite3.connect(path, isolation_level=None)
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                if conn.execute("PRAGMA user_version").fetchone()[0] == 0:
                    conn.executescript(f"BEGIN IMMEDIATE; {_SCHEMA}; "
                                       f"PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;")
            finally:
                conn.close()
        except sqlite3.Error as e:
            raise StoreError(f"cannot create the search index {path}: {e}") from e

    def _connect(self, *, readonly: bool) -> sqlite3.Connection:
        """A connection to the index with the database attached as ``cfm``, read-only
        (the index never writes the database)."""
        # A URI, so that the ATTACH below may be one too (mode=ro).
        conn = sqlite3.connect("file:" + _uri_path(self.path), uri=True,
                               timeout=self._busy_timeout_s, isolation_level=None)
        try:
            if readonly:
                conn.execute("PRAGMA query_only = 1")
            else:
                # Removed text is overwritten, not left in free pages.
                conn.execute("PRAGMA secure_delete = 1")
                conn.execute("PRAGMA synchronous = NORMAL")
            uri = "file:" + _uri_path(self.db_path) + "?mode=ro"
            conn.execute("ATTACH DATABASE ? AS cfm", (uri,))
        except sqlite3.Error:
            conn.close()
            raise
        return conn

    # --- from the write path (event loop) -----------------------------------------------

    def note(self, committed: Mapping[str, int], cuts: Mapping[str, int]) -> None:
        """After a COMMIT: each room's newest committed seq, and retention's cuts."""
        with self._lock:
            self._noted.update(committed)
            for room, seq in cuts.items():
                self._cuts[room] = max(seq, self._cuts.get(room, 0))
        self._wake.set()

    # --- searches (event loop) ----------------------------------------------------------

    def query(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        reader = self._reader
        if reader is None:
            raise StoreError("the search index is not open")
        return reader.execute(sql, params).fetchall()

    def behind(self, rooms: Mapping[str, int]) -> int:
        """How many messages up to each room's given seq the index has not seen yet."""
        indexed = self.indexed
        if indexed is None:
            return sum(rooms.values())
        get = indexed.get
        return sum(max(0, seq - get(room, 0)) for room, seq in rooms.items())

    def when_indexed(self, rooms: Mapping[str, int], callback: Callable[[], None],
                     timeout_s: float) -> None:
        """``callback()`` on the loop once ``behind(rooms)`` is 0, or after ``timeout_s``
        (or at close), whichever comes first; once."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or not thread.is_alive() or not self.behind(rooms):
            callback()
            return
        called = False

        def once() -> None:
            nonlocal called
            if not called:
                called = True
                callback()

        entry = (dict(rooms), once)
        self._waiters.append(entry)
        loop.call_later(timeout_s, self._expire, entry)
        self._wake.set()  # a search is waiting: no need to wait for the interval

    def _expire(self, entry: tuple[dict[str, int], Callable[[], None]]) -> None:
        with contextlib.suppress(ValueError):
            self._waiters.remove(entry)
            entry[1]()

    def _passed(self) -> None:
        """On the loop after each committed pass: answer the searches now in step."""
        waiters = self._waiters
        if not waiters:
            return
        ready = [w for w in waiters if not self.behind(w[0])]
        for entry in ready:
            waiters.remove(entry)
            entry[1]()

    # --- the thread ---------------------------------------------------------------------

    def _run(self) -> None:
        with contextlib.suppress(OSError, AttributeError):
            # Linux gives each thread its own nice value: the indexer yields the CPU to
            # the event loop (and to anything else) whenever both want it.
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        try:
            self._writer = self._connect(readonly=False)
        except sqlite3.Error as e:
            self._failed(e)
            return
        writer = self._writer
        try:
            while True:
                try:
                    todo = self._start(writer)
                    break
                except sqlite3.Error as e:
                    if self._stopping:
                        raise
                    logger.warning("search index %s: cannot start (%s); trying again in "
                                   "%.0f s", self.path, e, RETRY_S)
                    time.sleep(RETRY_S)
            while not self._stopping:
                started = time.monotonic()
                todo = self._pass(writer, todo)
                if self._stopping:
                    break
                loop = self._loop
                if loop is not None:
                    with contextlib.suppress(RuntimeError):  # the loop closed
                        loop.call_soon_threadsafe(self._passed)
                if todo:  # more to catch up: go on at once
                    continue
                self._wake.wait()
                self._wake.clear()
                # At most one pass per interval: a busy server's commits gather into one
                # (an idle server's lone message is indexed at once).
                pause = self._interval_s - (time.monotonic() - started)
                if pause > 0 and not self._stopping:
                    time.sleep(pause)
        except sqlite3.Error as e:
            if not self._stopping:
                self._failed(e)
        finally:
            self._writer = None
            writer.close()

    def _failed(self, e: sqlite3.Error) -> None:
        self.last_error = str(e)
        logger.error("search index %s stopped: %s; searches answer from what it held, "
                     "and it is rebuilt from where it stopped at the next start",
                     self.path, e)

    def _start(self, conn: sqlite3.Connection) -> dict[str, tuple[int, int]]:
        """Read the watermarks, drop what no longer matches the database, and return
        what is left to index: room → (indexed seq, newest seq in the database)."""
        self._changes = _changes_enabled(conn)
        marks = {room: (seq, ts) for room, seq, ts in
                 conn.execute("SELECT room, seq, ts FROM rooms")}
        stale: list[str] = []
        floors: list[tuple[str, int]] = []
        for room, (seq, ts) in marks.items():
            row = conn.execute("SELECT ts FROM cfm.messages WHERE room = ? AND seq = ?",
                               (room, seq)).fetchone()
            if row is None or row[0] != ts:
                stale.append(room)  # moved, archived, restored, or cut below the mark
                continue
            low = conn.execute("SELECT min(seq) FROM cfm.messages WHERE room = ?",
                               (room,)).fetchone()[0]
            floors.append((room, low))
        conn.execute("BEGIN IMMEDIATE")
        try:
            for room in stale:
                conn.execute("DELETE FROM docs WHERE room = ?", (room,))
                conn.execute("DELETE FROM rooms WHERE room = ?", (room,))
                del marks[room]
            for room, low in floors:  # retention that ran before the index caught up
                conn.execute("DELETE FROM docs WHERE room = ? AND seq < ?", (room, low))
            conn.execute("COMMIT")
        except BaseException:
            conn.rollback()
            raise
        if stale:
            logger.info("search index: %d rooms changed while the server was stopped; "
                        "indexing them again", len(stale))
        self.indexed = {room: seq for room, (seq, _) in marks.items()}
        todo: dict[str, tuple[int, int]] = {}
        for room, top in _rooms_with_messages(conn):
            done = self.indexed.get(room, 0)
            if top > done:
                todo[room] = (done, top)
        if todo:
            logger.info("search index: %d messages in %d rooms to index",
                        sum(top - done for done, top in todo.values()), len(todo))
        return todo

    def _pass(self, conn: sqlite3.Connection,
              todo: dict[str, tuple[int, int]]) -> dict[str, tuple[int, int]]:
        """Index what was noted (and ``todo``, the catch-up) up to the budget; return what
        is left for the next pass. Raises sqlite3.Error only when stopping."""
        with self._lock:
            noted, self._noted = self._noted, {}
            cuts, self._cuts = self._cuts, {}
        indexed = self.indexed
        assert indexed is not None
        for room, seq in noted.items():
            done, top = todo.get(room, (indexed.get(room, 0), 0))
            todo[room] = (done, max(top, seq))
        chunk: list[tuple[str, int, int]] = []
        left: dict[str, tuple[int, int]] = {}
        budget = self._budget
        for room, (done, top) in todo.items():
            if top <= done:  # noted, but a catch-up got there first
                continue
            if budget <= 0:
                left[room] = (done, top)
                continue
            upto = min(top, done + budget)
            chunk.append((room, done, upto))
            budget -= upto - done
            if upto < top:
                left[room] = (upto, top)
        try:
            marks = self._index(conn, chunk, cuts)
        except sqlite3.Error as e:
            if self._stopping:
                raise
            self.last_error = str(e)
            logger.warning("search index %s: a pass failed (%s); trying again in %.0f s",
                           self.path, e, RETRY_S)
            with self._lock:  # give the work back
                for room, seq in cuts.items():
                    self._cuts[room] = max(seq, self._cuts.get(room, 0))
            time.sleep(RETRY_S)
            return todo
        self.last_error = None
        for room, seq in marks.items():
            indexed[room] = seq
        return left

    def _index(self, conn: sqlite3.Connection, chunk: list[tuple[str, int, int]],
               cuts: Mapping[str, int]) -> dict[str, int]:
        """One transaction of the index: the cuts, then the chunk's messages; the new
        watermarks."""
        marks: dict[str, int] = {}
        conn.execute("BEGIN IMMEDIATE")
        try:
            for room, seq in cuts.items():
                conn.execute("DELETE FROM docs WHERE room = ? AND seq < ?", (room, seq))
            if chunk:
                conn.execute("CREATE TEMP TABLE IF NOT EXISTS todo ("
                             "room TEXT PRIMARY KEY, after INTEGER, upto INTEGER)")
                conn.execute("DELETE FROM temp.todo")
                conn.executemany("INSERT INTO temp.todo VALUES (?, ?, ?)", chunk)
                conn.execute(_INSERT_KEYS)
                conn.execute(_INSERT_TEXTS)
                if self._changes:
                    for sql in _CHANGES:
                        conn.execute(sql)
                # Each room's mark, in one statement (a pass may cover a thousand rooms:
                # no Python per room). The upto the loop noted is committed, and the
                # newest message of a room is never cut, so the message is there.
                conn.execute(_MARKS)
                marks = {room: upto for room, _, upto in chunk}
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.rollback()
            raise
        return marks


def _changes_enabled(conn: sqlite3.Connection) -> bool:
    """Whether the database's messages have the edits' and deletes' target column."""
    columns = {row[1] for row in conn.execute("PRAGMA cfm.table_info(messages)")}
    return TARGET_COLUMN in columns


def _rooms_with_messages(conn: sqlite3.Connection) -> list[tuple[str, int]]:
    """(room, newest seq) of every room in the database, one index seek per room."""
    rooms: list[tuple[str, int]] = []
    room = ""
    while True:
        row = conn.execute("SELECT room, max(seq) FROM cfm.messages WHERE room ="
                           " (SELECT min(room) FROM cfm.messages WHERE room > ?)",
                           (room,)).fetchone()
        if row is None or row[0] is None:
            return rooms
        room = row[0]
        if not room.startswith("archived:"):  # no client may read those
            rooms.append((room, row[1]))


def _uri_path(path: Path) -> str:
    """``path`` as the path part of an SQLite URI (``?`` and ``#`` would end it)."""
    return str(path.resolve()).replace("%", "%25").replace("?", "%3f").replace("#", "%23")
