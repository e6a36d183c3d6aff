"""WAL checkpoints for the SQLite store, off the event loop.

A checkpoint copies the WAL's pages into the database file (with synchronous=NORMAL also
two fsyncs). Left to SQLite it runs inside a COMMIT on the event loop's thread; here a
thread of its own with its own connection does it, asked for by the store after a COMMIT
and by a timer, so the loop never waits for one. See docs/performance.md, "Latency tail".
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import sqlite3
import struct
import time
from pathlib import Path

logger = logging.getLogger(__name__)

# Checkpoints (copying the WAL's pages into the database file; with synchronous=NORMAL
# also two fsyncs) run on a thread of their own with its own connection, so that the
# event loop never waits for them: at SQLite's default, every 1,000 WAL pages inside a
# COMMIT, they were half the cost of a COMMIT and stalled the loop for milliseconds, the
# whole p99 of the `latency` benchmark. A PASSIVE checkpoint lets the writer go on
# appending. The loop asks for one when the part of the WAL not yet copied has grown
# past CHECKPOINT_WAL_BYTES (read from the -shm file, see unchecked_wal_bytes), looking
# at most every CHECKPOINT_POLL_S; SQLite's own automatic checkpoint stays on as a
# backstop at WAL_AUTOCHECKPOINT_PAGES, should the thread fall behind. Each checkpoint
# still costs the loop a little: the tail copy in _finish and, on the next COMMIT, the
# fsync of the restarted WAL's header (1-3 ms together here). At 1,000 msg/s the WAL
# grows ~10 MB/s: 16 MB makes that one stall every ~1.7 s (4 MB: p99 0.2-0.5 ms worse).
# The WAL file keeps its largest size, so expect ~16-20 MB next to the database.
CHECKPOINT_WAL_BYTES = 16 << 20
CHECKPOINT_POLL_S = 0.25
# ... and on time too: whatever the WAL holds is copied into the database file at most
# this long after it was written, busy or idle (a timer looks when no COMMIT does), so
# the database file alone is never hours behind (a copy of it, a backup tool that reads
# only it). Copying a small WAL is cheap.
CHECKPOINT_INTERVAL_S = 60.0
WAL_AUTOCHECKPOINT_PAGES = 16000
# The WAL-index header (the start of the -shm file, native byte order): iVersion at 0,
# szPage at 14, mxFrame at 16; nBackfill at 96, after the header's two copies.
_WAL_INDEX_VERSION = 3007000
_SHM_BACKFILL_OFFSET = 96
_SHM_HEADER_BYTES = 100
_WAL_FRAME_HEADER_BYTES = 24


class Checkpointer:
    """PASSIVE WAL checkpoints on a thread of their own (see CHECKPOINT_WAL_BYTES).

    Group commit calls ``after_commit`` after each COMMIT; ``watch`` starts the timer that
    looks every interval when nothing commits, ``stop`` ends both.
    """

    def __init__(self, path: Path, busy_timeout_s: float,
                 interval_s: float = CHECKPOINT_INTERVAL_S) -> None:
        self._path = path
        self._interval_s = interval_s
        self._last_start = time.monotonic()
        self._wal_path = path.with_name(path.name + "-wal")
        self._shm_path = path.with_name(path.name + "-shm")
        # Kept open from the first read until ``release`` (after the store's connection
        # has closed): closing any descriptor of a file drops every POSIX lock this
        # process holds on it, SQLite's own on the -shm included. Opened and closed per
        # read, it left the server holding no lock on its -shm after the first COMMIT,
        # so the next program to open the database (cfm admin backup, an sqlite3 shell,
        # the search indexer) took itself for the first, truncated the -shm, and the
        # server died of SIGBUS at its next COMMIT.
        self._shm_fd = -1
        self._busy_timeout_s = busy_timeout_s
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._running: concurrent.futures.Future[None] | None = None
        self._conn: sqlite3.Connection | None = None  # used only on the thread
        self._timer: asyncio.TimerHandle | None = None
        self._next_poll = 0.0
        self.started = 0  # checkpoints handed to the thread (for tests and curiosity)
        self.last_seconds: float | None = None  # the last one's duration (for /metrics)

    def after_commit(self, conn: sqlite3.Connection) -> None:
        """After a COMMIT: finish a checkpoint the thread completed, or maybe start one."""
        if self._in_flight(conn):
            return
        now = time.monotonic()
        if now < self._next_poll:
            return
        self._next_poll = now + CHECKPOINT_POLL_S
        unchecked = self.unchecked_wal_bytes()
        if unchecked < CHECKPOINT_WAL_BYTES and not (
                unchecked and now - self._last_start >= self._interval_s):
            return
        self._start()

    def _in_flight(self, conn: sqlite3.Connection) -> bool:
        """Whether a checkpoint was running; one the thread has completed is finished
        here (on the loop, with the connection) and no longer counts."""
        running = self._running
        if running is None:
            return False
        if running.done():
            self._running = None
            self._finish(conn)
        return True

    def watch(self, conn: sqlite3.Connection, loop: asyncio.AbstractEventLoop) -> None:
        """Look every interval whether an idle store's WAL needs copying, until stop()."""
        def tick() -> None:
            self.on_timer(conn)
            self._timer = loop.call_later(self._interval_s, tick)

        self._timer = loop.call_later(self._interval_s, tick)

    def on_timer(self, conn: sqlite3.Connection) -> None:
        """Every interval, COMMIT or not: what an idle server wrote reaches the database."""
        if conn.in_transaction:
            return  # a batch is open: its COMMIT's after_commit looks instead
        if self._in_flight(conn):
            return
        if (time.monotonic() - self._last_start >= self._interval_s
                and self.unchecked_wal_bytes()):
            self._start()

    def _start(self) -> None:
        self._last_start = time.monotonic()
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="cfm-checkpoint")
        self._running = self._executor.submit(self._checkpoint)
        self.started += 1

    def unchecked_wal_bytes(self) -> int:
        """How much of the WAL is not yet copied into the database (0 if unknown).

        Not the WAL file's size: SQLite starts the WAL over from its top after a
        checkpoint but keeps the file as long as it once grew, so its size stayed above
        the threshold and every poll started a checkpoint, each costing the loop a tail
        checkpoint (two fsyncs, ``_finish``) and the next COMMIT the fsync of a fresh
        WAL header. The WAL-index header in the ``-shm`` file (sqlite.org/walformat.html)
        holds the frames in the WAL (mxFrame) and those already copied (nBackfill).
        """
        try:
            if self._shm_fd < 0:
                self._shm_fd = os.open(self._shm_path, os.O_RDONLY | os.O_CLOEXEC)
            header = os.pread(self._shm_fd, _SHM_HEADER_BYTES, 0)
        except OSError:
            return self._wal_file_bytes()
        if len(header) < _SHM_HEADER_BYTES:
            return self._wal_file_bytes()
        version, page_size, frames = struct.unpack_from("=I10xHI", header)
        (backfilled,) = struct.unpack_from("=I", header, _SHM_BACKFILL_OFFSET)
        if version != _WAL_INDEX_VERSION:
            return self._wal_file_bytes()  # a layout this code does not know: the old way
        if page_size == 1:
            page_size = 65536
        return max(0, frames - backfilled) * (page_size + _WAL_FRAME_HEADER_BYTES)

    def _wal_file_bytes(self) -> int:
        try:
            return os.stat(self._wal_path).st_size
        except OSError:
            return 0

    def _finish(self, conn: sqlite3.Connection) -> None:
        # The thread copied the WAL up to where it began. While writes go on, that never
        # covers the whole WAL, and SQLite starts the WAL over from its top only when all
        # of it was copied: so copy the frames written meanwhile here, a short tail,
        # between two COMMITs. Without this the WAL would grow to the backstop.
        try:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error as e:
            logger.warning("checkpoint of %s failed: %s", self._path, e)

    def _checkpoint(self) -> None:
        try:
            if self._conn is None:
                self._conn = sqlite3.connect(self._path, timeout=self._busy_timeout_s,
                                             isolation_level=None, check_same_thread=False)
            started = time.perf_counter()
            self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            self.last_seconds = time.perf_counter() - started
        except sqlite3.Error as e:
            # Harmless for the data: the WAL keeps everything, and SQLite's automatic
            # checkpoint is still there.
            logger.warning("background checkpoint of %s failed: %s", self._path, e)

    def stop(self) -> None:
        """Stop the timer; wait for a running checkpoint, then close its connection and
        thread."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        executor, self._executor = self._executor, None
        if executor is None:
            return
        executor.submit(self._close_connection)
        executor.shutdown(wait=True)
        self._running = None

    def release(self) -> None:
        """Close the -shm descriptor: only once no connection of this process has the
        database open (see ``__init__``)."""
        fd, self._shm_fd = self._shm_fd, -1
        if fd >= 0:
            os.close(fd)

    def _close_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
