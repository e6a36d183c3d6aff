"""The search indexer: a process of its own that keeps the search index file.

``searchindex.py`` (in the server) starts it (``main(argv)`` with the database's and the
index's paths) and writes to its stdin, after group commits, which rooms have new committed
messages and where retention cut; it exits when its stdin closes (the server stopped,
or died). (If it dies first, the server starts another, whose ``start`` catches up from the
database.) It reads the new rows from the database through a read-only connection and
indexes them in batches ("passes"), each one transaction of the index file, which
also records each room's watermark (``rooms``); the server reads those to know how far
behind the index is. A process, not a thread: the server's event loop never shares its
GIL with the indexing, and the indexer runs at the lowest CPU priority without holding
anything the event loop waits for.

The file's tables (the schema is ``SCHEMA``):

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
their target's seq: ``_CHANGES`` is where a pass turns them into an update or a
removal of the target's ``docs`` row, in the same transaction that indexes them.

Its stdin, one line each: ``n<TAB>seq<TAB>room`` (committed up to seq), ``c<TAB>seq<TAB>room``
(retention deleted below seq), ``x<TAB>0<TAB>room`` (its messages left it: forget it),
``r`` (notes were lost: look at every room again), ``d`` (a search met a damaged page:
check the file, ``searchfile.check_index``).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import sys
import time
from pathlib import Path

from cfm_server.childproc import die_with
from cfm_server.store.searchfile import (
    check_index,
    is_corrupt,
    note_lines,
    run,
    serve_notes,
    transaction,
)
from cfm_server.store.searchwords import KEY_SHIFT, MAX_TS, TEXT_INDEX_SCHEMA

logger = logging.getLogger("cfm_server.store.searchindexer")

SCHEMA_VERSION = 1
SCHEMA = f"""
CREATE TABLE docs (
    key INTEGER PRIMARY KEY,
    room TEXT NOT NULL,
    seq INTEGER NOT NULL
);
CREATE UNIQUE INDEX docs_by_message ON docs (room, seq);
{TEXT_INDEX_SCHEMA}CREATE TABLE rooms (
    room TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    ts INTEGER NOT NULL
) WITHOUT ROWID;
"""


# How often a busy server's new messages are indexed: one transaction of the index per
# pass, so the bigger the pass the fewer pages per message (the lesson of the triggers).
PASS_INTERVAL_S = 0.1
# Messages read into one pass at most: a catch-up of millions goes in steps this big,
# each its own transaction, so searches see it grow and a stop is never far.
PASS_BUDGET = 20_000
RETRY_S = 1.0  # after a pass failed (the index file locked, unwritable, full)

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
  AND m.change_kind IS NULL AND m.ts BETWEEN 0 AND {MAX_TS}
"""
_INSERT_TEXTS = """
INSERT INTO texts (key, text)
SELECT d.key, m.text
FROM temp.todo t
CROSS JOIN docs d ON d.room = t.room AND d.seq > t.after AND d.seq <= t.upto
CROSS JOIN cfm.messages m ON m.room = d.room AND m.seq = d.seq
"""

# Edits and deletes (schema v4, docs/protocol.md "Message changes"): change entries (rows
# whose CHANGE_COLUMN is EDIT_KIND / DELETE_KIND) whose TARGET_COLUMN names the seq they
# change; they are never indexed themselves (a reaction's emoji is no text to find). Run
# after the inserts in the same pass: an edit replaces its target's text (the trigger
# re-indexes it), a delete takes the target out of the index. A hidden edit (sent across a
# block) changed nothing in the store, so it changes nothing here either.
EDIT_KIND = "edit"
DELETE_KIND = "delete"
CHANGE_COLUMN = "change_kind"
TARGET_COLUMN = "target"
_CHANGES = (
    f"""
    UPDATE texts SET text = e.text FROM (
        SELECT d.key, m.text, max(m.seq)
        FROM temp.todo t
        CROSS JOIN cfm.messages m ON m.room = t.room AND m.seq > t.after AND m.seq <= t.upto
        CROSS JOIN docs d ON d.room = m.room AND d.seq = m.{TARGET_COLUMN}
        WHERE m.{CHANGE_COLUMN} = '{EDIT_KIND}' AND coalesce(m.hidden, 0) = 0 GROUP BY d.key) AS e
    WHERE texts.key = e.key
    """,
    f"""
    DELETE FROM docs WHERE (room, seq) IN (
        SELECT m.room, m.{TARGET_COLUMN}
        FROM temp.todo t
        CROSS JOIN cfm.messages m ON m.room = t.room AND m.seq > t.after AND m.seq <= t.upto
        WHERE m.{CHANGE_COLUMN} = '{DELETE_KIND}')
    """,
)


_MARKS = """
INSERT OR REPLACE INTO rooms (room, seq, ts)
SELECT t.room, t.upto, m.ts FROM temp.todo t
CROSS JOIN cfm.messages m ON m.room = t.room AND m.seq = t.upto
"""


_TODO = """
INSERT INTO temp.todo (room, after, upto)
SELECT value ->> 0, value ->> 1, value ->> 2 FROM json_each(?)
"""


class Indexer:
    """The passes over one index file, on the connection ``conn`` (the index, with the
    database attached read-only as ``cfm``)."""

    def __init__(self, conn: sqlite3.Connection, *, interval_s: float = PASS_INTERVAL_S,
                 budget: int = PASS_BUDGET) -> None:
        self.conn = conn
        self.interval_s = interval_s
        self.budget = budget
        self.indexed: dict[str, int] = {}  # each room's watermark
        self.todo: dict[str, tuple[int, int]] = {}  # room -> (indexed, noted)
        self.cuts: dict[str, int] = {}
        self.changes = False  # the database has edits and deletes (_CHANGES)

    def start(self) -> None:
        """Read the watermarks, drop what no longer matches the database, and plan
        what is left to index."""
        conn = self.conn
        self.changes = _changes_enabled(conn)
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS todo ("
                     "room TEXT PRIMARY KEY, after INTEGER, upto INTEGER)")
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
        with transaction(conn):
            for room in stale:
                conn.execute("DELETE FROM docs WHERE room = ?", (room,))
                conn.execute("DELETE FROM rooms WHERE room = ?", (room,))
                del marks[room]
            for room, low in floors:  # retention that ran before the index caught up
                conn.execute("DELETE FROM docs WHERE room = ? AND seq < ?", (room, low))
        if stale:
            logger.info("search index: %d rooms changed while the server was stopped; "
                        "indexing them again", len(stale))
        self.indexed = {room: seq for room, (seq, _) in marks.items()}
        self.rescan()
        if self.todo:
            logger.info("search index: %d messages in %d rooms to index",
                        sum(top - done for done, top in self.todo.values()),
                        len(self.todo))

    def rescan(self) -> None:
        """Every room of the database with messages the index has not seen."""
        for room, top in _rooms_with_messages(self.conn):
            self.note(room, top)

    def note(self, room: str, seq: int) -> None:
        """``room``'s messages up to ``seq`` are committed."""
        done, top = self.todo.get(room, (self.indexed.get(room, 0), 0))
        if seq > max(done, top):
            self.todo[room] = (done, seq)

    def forget(self, room: str) -> None:
        """``room``'s messages left it (a DM archived while the server runs): what was
        indexed of it goes with its watermark, so a new room of that name is indexed
        from its first seq."""
        self.todo.pop(room, None)
        self.cuts.pop(room, None)
        self.indexed.pop(room, None)
        with transaction(self.conn):
            self.conn.execute("DELETE FROM docs WHERE room = ?", (room,))
            self.conn.execute("DELETE FROM rooms WHERE room = ?", (room,))

    def cut(self, room: str, seq: int) -> None:
        self.cuts[room] = max(seq, self.cuts.get(room, 0))

    def run_pass(self) -> None:
        """Index the cuts and up to ``budget`` noted messages in one transaction; what
        is over the budget stays in ``todo``. On an SQLite error nothing is lost: the
        work stays planned for the next pass."""
        chunk: list[tuple[str, int, int]] = []
        left: dict[str, tuple[int, int]] = {}
        budget = self.budget
        for room, (done, top) in self.todo.items():
            if budget <= 0:
                left[room] = (done, top)
                continue
            upto = min(top, done + budget)
            chunk.append((room, done, upto))
            budget -= upto - done
            if upto < top:
                left[room] = (upto, top)
        self._index(chunk)
        self.cuts.clear()
        self.todo = left
        for room, _, upto in chunk:
            self.indexed[room] = upto

    def _index(self, chunk: list[tuple[str, int, int]]) -> None:
        conn = self.conn
        with transaction(conn):
            for room, seq in self.cuts.items():
                conn.execute("DELETE FROM docs WHERE room = ? AND seq < ?", (room, seq))
            if chunk:
                conn.execute("DELETE FROM temp.todo")
                conn.execute(_TODO, (json.dumps(chunk),))
                conn.execute(_INSERT_KEYS)
                conn.execute(_INSERT_TEXTS)
                if self.changes:
                    for sql in _CHANGES:
                        conn.execute(sql)
                # The upto the server noted is committed, and a room's newest message is
                # never cut, so the message at the mark is there.
                conn.execute(_MARKS)


def read_notes(data: bytes, indexer: Indexer, index: Path) -> None:
    """Apply the lines of ``data`` (whole lines only) to ``indexer`` (``d``: a search met
    a damaged page, of the index at ``index`` or of the database; ``Damaged`` if the
    index is)."""
    for kind, seq, room in note_lines(data):
        if kind == "r":
            indexer.rescan()
        elif kind == "d":
            check_index(indexer.conn, str(index), logger)
        elif seq is not None and kind == "n":
            indexer.note(room, seq)
        elif seq is not None and kind == "c":
            indexer.cut(room, seq)
        elif seq is not None and kind == "x":
            indexer.forget(room)


def serve(db_path: Path, index: Path, stdin: int) -> None:
    """The process's loop: start, then a pass whenever there is work, at most one per
    interval, until ``stdin`` reaches its end."""
    conn = connect(index, db_path, readonly=False)
    indexer = Indexer(conn)

    def failed(e: sqlite3.Error, what: str) -> None:
        """A start or a pass failed: tried again after RETRY_S, unless SQLite said a file
        is damaged, which no retry gets past."""
        if is_corrupt(e):
            if _database_damaged(conn):
                raise DatabaseDamaged(f"the database {db_path} is damaged ({e})") from e
            raise e  # the index: its server makes it again
        logger.warning("search index %s: %s (%s); trying again in %.0f s", index, what, e,
                       RETRY_S)
        time.sleep(RETRY_S)

    while True:
        try:
            indexer.start()
            break
        except sqlite3.Error as e:
            failed(e, "cannot start")

    def one_pass() -> None:
        try:
            indexer.run_pass()
        except sqlite3.Error as e:
            failed(e, "a pass failed")

    serve_notes(stdin, b"", lambda whole: read_notes(whole, indexer, index),
                lambda: bool(indexer.todo or indexer.cuts), one_pass,
                lambda: indexer.interval_s)


class DatabaseDamaged(sqlite3.DatabaseError):
    """SQLite found the database damaged, not the index: making the index again would
    not help (nor would the index's name in the log). An error with no SQLite code of
    its own: the indexer stops with an ordinary failure's status, naming the database."""


def _database_damaged(conn: sqlite3.Connection) -> bool:
    """SQLite said "corrupt" to a statement that read both files: whose? The index's
    b-trees are checked first (``quick_check``, usually the smaller file), then, if they
    are whole, the database's (the whole file, in this nice-19 process, once per death);
    if those are whole too, the index is to blame (its damage may be inside FTS5's
    records, which no ``quick_check`` reads)."""
    return _checks_whole(conn, "main") and not _checks_whole(conn, "cfm")


def _checks_whole(conn: sqlite3.Connection, schema: str) -> bool:
    try:
        return conn.execute(f"PRAGMA {schema}.quick_check(1)").fetchone()[0] == "ok"
    except sqlite3.DatabaseError:
        return False


def connect(index: Path, db_path: Path, *, readonly: bool,
            busy_timeout_s: float = 2.0) -> sqlite3.Connection:
    """A connection to the index with the database attached as ``cfm``, read-only
    (the index never writes the database)."""
    # A URI, so that the ATTACH below may be one too (mode=ro).
    conn = sqlite3.connect("file:" + _uri_path(index), uri=True, timeout=busy_timeout_s,
                           isolation_level=None)
    try:
        if readonly:
            conn.execute("PRAGMA query_only = 1")
        else:
            # Removed text is overwritten, not left in free pages.
            conn.execute("PRAGMA secure_delete = 1")
            conn.execute("PRAGMA synchronous = NORMAL")
        # Read-only: besides never writing, a read-only connection never takes itself
        # for the database's last one at its close (folding the WAL in and deleting it
        # under a server that was killed a moment before and is starting again).
        conn.execute("ATTACH DATABASE ? AS cfm",
                     ("file:" + _uri_path(db_path) + "?mode=ro",))
    except sqlite3.Error:
        conn.close()
        raise
    return conn


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


def main(argv: list[str]) -> int:
    if len(argv) not in (3, 4):
        print("usage: searchindexer DB_PATH INDEX_PATH [SERVER_PID]", file=sys.stderr)
        return 2
    if len(argv) == 4:
        die_with(int(argv[3]))
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    return run(lambda: serve(Path(argv[1]), Path(argv[2]), sys.stdin.fileno()), argv[2],
               logger)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
