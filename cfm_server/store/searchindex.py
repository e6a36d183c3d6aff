"""The search index, from the server's side: a second SQLite file beside the database,
kept by a process of its own (``searchindexer.py``), and read here for searches.

Why a separate file and process: indexing a message (FTS5's tokenizing, its segments and
merges) costs about as much as storing it. Done by triggers in the group commit's
transaction it halved the raw append rate and cost ``say`` 7-10 % (docs/performance.md,
"Search"); done by a thread of the server, it still took from the event loop under
load, every call into SQLite being a hand-over of the GIL. Here the write path only
notes which rooms moved (a dict assignment per ``append``); every FLUSH_INTERVAL_S those
notes go down a pipe to the indexer process, which reads the new rows from the
database itself. It runs at the lowest CPU priority, so it takes the core the event
loop does not use.

The file (``<db stem>.search<suffix>``, e.g. ``cfm.search.sqlite3``) holds only what can
be rebuilt from the database: deleting it costs a rebuild at the next start, nothing
else. It is not in backups.

How far behind the index is comes from the file itself (the indexer's per-room
watermarks), read when a search asks: nothing flows back from the indexer otherwise.

An indexer that dies while the server runs (the OOM killer, a SIGKILL, a crash) is
started again after a back-off (``childwatch.ChildKeeper``). What the dead one had
been told and not yet indexed is not lost: a new indexer's start looks at every room
of the database against the file's watermarks (``Indexer.start``), so it catches up
from the database itself; the notes made meanwhile follow. One that stops on a damaged
file (a bad page deep inside, which a start does not look for) has the file moved aside
and made again (``searchfile.IndexerClient._remake``): the next one indexes the whole
database into it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sqlite3
import subprocess
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from cfm_server.childproc import child_command
from cfm_server.childwatch import OUTPUT, ChildKeeper
from cfm_server.datadir import make_private_file, tighten
from cfm_server.store.base import StoreError
from cfm_server.store.searchfile import IndexerClient, write_notes
from cfm_server.store.searchindexer import SCHEMA, SCHEMA_VERSION, connect
from cfm_server.store.searchwaiters import CatchUpWaiters

logger = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 0.02  # notes are written to the indexer at most this often
MAX_BACKLOG = 1 << 22  # notes the pipe would not take: beyond this, "look at every room"

_MARKS = "SELECT room, seq FROM rooms WHERE room IN (SELECT value FROM json_each(?))"


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


class SearchIndex(IndexerClient):
    """The index file of the database at ``db_path`` and its indexer process.

    Used from the event loop: ``open``/``close``, ``note`` (after each COMMIT: rooms and
    their newest committed seq, and retention's cuts), ``query`` (a search), ``behind``
    and ``when_indexed`` (how far the index lags).
    """

    def __init__(self, db_path: Path, *, busy_timeout_s: float = 2.0) -> None:
        self.db_path = db_path
        self.path = index_path(db_path)
        self._busy_timeout_s = busy_timeout_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reader: sqlite3.Connection | None = None  # the loop's, for searches
        self._process: subprocess.Popen[bytes] | None = None
        self._pipe = -1
        # Notes not yet written to the indexer: room -> committed seq, room -> cut.
        self._noted: dict[str, int] = {}
        self._cuts: dict[str, int] = {}
        self._gone: list[str] = []  # rooms whose messages left them (``forget``)
        # Those rooms' marks when they were forgotten, until the indexer has dropped
        # them: until then ``behind`` counts the room as not indexed at all.
        self._forgetting: dict[str, tuple[int, int]] = {}
        self._backlog = b""  # written in part: the pipe was full
        self._flush_handle: asyncio.Handle | None = None
        self._waiters = CatchUpWaiters(self.behind)
        self._keeper = ChildKeeper("the search indexer", self._spawn, self._died, logger)

    # --- lifecycle (event loop) ---------------------------------------------------------

    def open(self) -> None:
        self._loop = asyncio.get_running_loop()
        try:
            self._make_file()
        except (OSError, sqlite3.Error) as e:
            raise StoreError(f"cannot create the search index {self.path}: {e}") from e
        try:
            self._reader = self._open_reader()
        except sqlite3.Error as e:
            raise StoreError(f"cannot open the search index {self.path}: {e}") from e
        try:
            self._keeper.start()
        except OSError as e:
            self._reader.close()
            self._reader = None
            raise StoreError(f"cannot start the search indexer: {e}") from e

    def _spawn(self) -> subprocess.Popen[bytes]:
        """An indexer process, its pipe ready for the notes (at the start, and after a
        death: its own start catches up from the database)."""
        process = subprocess.Popen(
            child_command("cfm_server.store.searchindexer", str(self.db_path),
                          str(self.path), str(os.getpid())),
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=OUTPUT, close_fds=True)
        assert process.stdin is not None
        self._process = process
        self._pipe = process.stdin.fileno()
        os.set_blocking(self._pipe, False)
        if (self._noted or self._cuts or self._gone) and self._flush_handle is None \
                and self._loop:
            self._flush_handle = self._loop.call_later(FLUSH_INTERVAL_S, self._flush)
        return process

    def _open_reader(self) -> sqlite3.Connection:
        return connect(self.path, self.db_path, readonly=True,
                       busy_timeout_s=self._busy_timeout_s)

    def _make_file(self) -> None:
        """The index file 0600 at the current version; one this cfm cannot use (another
        version, not SQLite) is deleted: it only ever holds a rebuildable copy. (No
        integrity check here: that reads the whole file, seconds for millions of
        messages, before the server may listen; a damaged page is met by the indexer.)
        OSError or sqlite3.Error if it cannot be made."""
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
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            if conn.execute("PRAGMA user_version").fetchone()[0] == 0:
                conn.executescript(f"BEGIN IMMEDIATE; {SCHEMA}; "
                                   f"PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;")
        finally:
            conn.close()

    # --- from the write path (event loop) -----------------------------------------------

    def note(self, committed: Mapping[str, int], cuts: Mapping[str, int]) -> None:
        """After a COMMIT: each room's newest committed seq, and retention's cuts. Kept
        until the next flush: the indexer batches anyway, and a write per COMMIT would
        be a system call on the say path."""
        self._noted.update(committed)
        for room, seq in cuts.items():
            self._cuts[room] = max(seq, self._cuts.get(room, 0))
        if self._flush_handle is None and self._loop is not None and self._pipe >= 0:
            self._flush_handle = self._loop.call_later(FLUSH_INTERVAL_S, self._flush)

    def forget(self, rooms: Iterable[str]) -> None:
        """``rooms`` no longer hold the messages indexed for them (DMs archived by
        ``cfm admin remove-user`` on the running server): the indexer drops them, so
        that a new room of the same name is indexed from its first seq. (A stopped
        server's are found by the indexer's start-up check.)"""
        for room in rooms:
            self._noted.pop(room, None)
            self._cuts.pop(room, None)
            self._gone.append(room)
            mark = self._mark(room)
            if mark is not None:
                self._forgetting[room] = mark
        if self._flush_handle is None and self._loop is not None and self._pipe >= 0:
            self._flush_handle = self._loop.call_later(FLUSH_INTERVAL_S, self._flush)

    def _flush(self) -> None:
        self._flush_handle = None
        if self._pipe < 0:
            return
        noted, self._noted = self._noted, {}
        cuts, self._cuts = self._cuts, {}
        gone, self._gone = self._gone, []
        lines = [f"x\t0\t{room}\n" for room in gone]
        lines += [f"c\t{seq}\t{room}\n" for room, seq in cuts.items()]
        lines += [f"n\t{seq}\t{room}\n" for room, seq in noted.items()]
        data = self._backlog + "".join(lines).encode()
        written = write_notes(self._pipe, data)
        if written is None:  # the indexer is gone: the keeper starts another
            self._pipe = -1
            self._backlog = b""
            self._keeper.check()
            return
        self._backlog = data[written:]
        if len(self._backlog) > MAX_BACKLOG:
            # The indexer is stuck: rather than keep every note, have it look at every
            # room once it reads again (a rescan costs it one seek per room).
            self._backlog = b"".join(line + b"\n" for line in self._backlog.splitlines()
                                     if line.startswith(b"x\t")) + b"r\n"
        if self._backlog and self._loop is not None:
            self._flush_handle = self._loop.call_later(FLUSH_INTERVAL_S, self._flush)

    # --- searches (event loop) ----------------------------------------------------------

    def query(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        reader = self._reader
        if reader is None:
            raise StoreError("the search index is not open")
        try:
            return reader.execute(sql, params).fetchall()
        except sqlite3.Error as e:
            self._read_failed(e)
            raise

    def behind(self, rooms: Mapping[str, int]) -> int:
        """How many messages up to each room's given seq the index has not seen yet."""
        wanted = {room: seq for room, seq in rooms.items() if seq > 0}
        if not wanted:
            return 0
        try:
            marks = dict(self.query(_MARKS, (json.dumps(list(wanted)),)))
        except (sqlite3.Error, StoreError):
            return sum(wanted.values())
        for room in self._forgetting.keys() & wanted.keys():
            if self._mark(room) == self._forgetting[room]:
                marks.pop(room, None)  # the forgotten room's: not dropped yet
            else:
                del self._forgetting[room]
        return sum(max(0, seq - marks.get(room, 0)) for room, seq in wanted.items())

    def _mark(self, room: str) -> tuple[int, int] | None:
        """``room``'s watermark in the index: (seq, ts); None if none (or unreadable)."""
        try:
            rows = self.query("SELECT seq, ts FROM rooms WHERE room = ?", (room,))
        except (sqlite3.Error, StoreError):
            return None
        return (int(rows[0][0]), int(rows[0][1])) if rows else None

    def when_indexed(self, rooms: Mapping[str, int], callback: Callable[[], None],
                     timeout_s: float) -> None:
        """``callback()`` on the loop once ``behind(rooms)`` is 0, or after ``timeout_s``
        (not at all if the index closes first), whichever comes first; once."""
        loop, process = self._loop, self._process
        if loop is None or process is None or process.poll() is not None \
                or not self.behind(rooms):
            callback()
            return
        self._waiters.add(rooms, callback, timeout_s)
        if self._noted or self._cuts:
            self._flush()  # a search waits: no need to wait for the flush interval
