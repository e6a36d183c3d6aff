"""``SqliteStore``: the embedded default store, one SQLite file in WAL mode.

Durability. In WAL mode a COMMIT appends the transaction to the ``-wal`` file with
``write()``; from then on the data is in the kernel's page cache, so it survives the death
of the process (a crash, an OOM kill, SIGKILL) even with ``synchronous=NORMAL``, which
only skips the ``fsync``. That is the promise behind an ``ack``. ``synchronous="full"``
also fsyncs the WAL on every commit, so acknowledged messages survive a power cut or a
kernel crash too, at the price of one fsync per group commit. Neither setting can corrupt
the database; NORMAL may only lose the last transactions on power loss.

Group commit. Every write runs at once inside an open transaction, so a read right after
sees it, and returns a Commit future. The first write of a batch schedules the COMMIT:
on the next event-loop iteration (``commit_interval_ms=0``) or that many milliseconds
later. With ``commit_interval_ms=0`` the window adapts: when the previous batch held
at least ``BUSY_BATCH`` writes the server is busy, and the next COMMIT waits
``BUSY_WINDOW_S`` (a millisecond) so that it carries more; an idle server commits on
the next iteration, so a lone message is not delayed.
Everything written until then shares that COMMIT, then the batch's futures
complete in write order. If a write or the COMMIT fails (disk full, I/O error) the whole
batch is rolled back and every one of its futures gets a :class:`StoreError`; the next
write starts a fresh transaction, so the store works again once the disk recovers.

One connection, used only from the event-loop thread: the statements are microseconds
and a WAL commit without fsync is a ``write()``, cheaper than a thread hop.

The data directory holds ``<name>``, its ``-wal``/``-shm`` files and ``<name>.lock``.
The store holds an ``flock`` on the lock file while it is open, so a second server on
the same directory fails at once instead of interleaving writes with the first.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import fcntl
import logging
import os
import sqlite3
import struct
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from cfm_common.frames import StoredMsg
from cfm_server.datadir import FILE_MODE, make_private_dir, make_private_file, tighten
from cfm_server.store.base import (
    Commit,
    ContactRecord,
    RoomRecord,
    Store,
    StoreError,
    UserRecord,
)

logger = logging.getLogger(__name__)


class DataDirInUse(StoreError):
    """Another process (a running ``cfm serve``) holds the data directory's lock."""

    def __init__(self, message: str, holder_pid: int | None) -> None:
        super().__init__(message)
        self.holder_pid = holder_pid  # as the holder wrote it into the lock file


# MIGRATIONS[n] takes a database from schema version n to n + 1 (PRAGMA user_version).
# Append new ones; never edit a released one.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE users (
        name TEXT PRIMARY KEY,
        token_hash TEXT NOT NULL,
        display TEXT NOT NULL,
        psm TEXT NOT NULL,
        status TEXT NOT NULL,
        bot INTEGER NOT NULL,
        created_ms INTEGER NOT NULL
    ) WITHOUT ROWID;
    -- A room's latest seq is max(messages.seq): appending stays one INSERT.
    CREATE TABLE rooms (
        room TEXT PRIMARY KEY,
        epoch TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE members (
        room TEXT NOT NULL,
        name TEXT NOT NULL,
        PRIMARY KEY (room, name)
    ) WITHOUT ROWID;
    -- Clustered on (room, seq): a history page is one range scan.
    CREATE TABLE messages (
        room TEXT NOT NULL,
        seq INTEGER NOT NULL,
        sender TEXT NOT NULL,
        text TEXT NOT NULL,
        ts INTEGER NOT NULL,
        kind TEXT NOT NULL,
        client_id TEXT,
        PRIMARY KEY (room, seq)
    ) WITHOUT ROWID;
    -- Retries are found by (sender, client id); NULLs (nudges without id) never collide.
    CREATE UNIQUE INDEX messages_by_client_id ON messages (sender, client_id);
    CREATE TABLE contacts (
        owner TEXT NOT NULL,
        name TEXT NOT NULL,
        in_list INTEGER NOT NULL,
        blocked INTEGER NOT NULL,
        PRIMARY KEY (owner, name)
    ) WITHOUT ROWID;
    CREATE TABLE reads (
        name TEXT NOT NULL,
        room TEXT NOT NULL,
        seq INTEGER NOT NULL,
        PRIMARY KEY (name, room)
    ) WITHOUT ROWID;
    """,
    # v2: sign-ups counted per invite code (registration = "invite").
    """
    CREATE TABLE invite_uses (
        nonce TEXT PRIMARY KEY,
        used INTEGER NOT NULL
    ) WITHOUT ROWID;
    """,
    # v3: private blocking. 1 marks a DM message hidden from the room's other member (its
    # sender was blocked by them when it was sent); NULL, the rest, costs no byte.
    """
    ALTER TABLE messages ADD COLUMN hidden INTEGER;
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)

_SYNCHRONOUS = {"normal": "NORMAL", "full": "FULL"}

# The adaptive group-commit window (see the module docstring): a batch this big means the
# server is busy, and the next COMMIT waits this long to gather more writes. A COMMIT
# writes every page its batch dirtied, so fewer, bigger batches write fewer pages per
# message (several messages of a room share a leaf page).
BUSY_BATCH = 8
BUSY_WINDOW_S = 0.001

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

# Whether a server had the database open, in the header field SQLite leaves to the
# application (PRAGMA application_id). Set at open and copied into the database file at
# once; set back at a clean close, when SQLite copies the whole WAL in and deletes it.
# So "open" with no WAL file beside it is a database file whose WAL was lost — copied
# alone from a running server, or its WAL deleted after a crash — and the messages
# since its last checkpoint with it: the server refuses to start on it rather than
# serve it as if nothing were missing. 0 (older databases): unknown, never refused.
APP_ID_CLOSED = 0x63666D00  # "cfm\0"
APP_ID_OPEN = 0x63666D01

_MESSAGE_COLUMNS = "room, seq, sender, text, ts, kind, client_id, hidden"

# A plain INSERT: the store refuses a gap or a repeated seq before it, from each room's
# latest seq kept in memory (``SqliteStore._next_seq``). It used to be a guard in the
# statement itself (INSERT ... SELECT ... WHERE seq = 1 + max(seq)), a third of the
# INSERT's cost; the primary key still refuses a repeated seq, and the lock file makes
# this connection the only writer.
_APPEND = f"INSERT INTO messages ({_MESSAGE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"


class _ClientIdFilter:
    """Which (sender, client id) pairs may be stored: "certainly not" saves a query.

    Every ``say`` asks the store for its (sender, id) before storing it (a retry must get
    its original ack, also after a restart), and almost every answer is "no". A bitmap
    indexed by the pair's hash answers that from memory; a set bit (the pair, or a hash
    collision) falls back to the query, so a false positive costs a query and nothing
    else. Built at open from the stored ids, and rebuilt from the table, bigger, when it
    gets a sixteenth full, so false positives stay under ~6 %.
    """

    __slots__ = ("_bits", "_count", "_mask")

    # 1 MiB: 524,288 ids before the first rebuild. A rebuild reads every stored id on
    # the event loop (0.6 s per million here, as the open does), so it comes only when
    # the count has doubled: each build leaves room for twice the ids it holds.
    MIN_BITS = 1 << 23
    BITS_PER_ID = 16

    def __init__(self, pairs: Iterable[tuple[str, str]], count: int) -> None:
        size = self.MIN_BITS
        while size < 2 * count * self.BITS_PER_ID:
            size <<= 1
        self._bits = bytearray(size >> 3)
        self._mask = size - 1
        self._count = 0
        for pair in pairs:
            self.add(pair)

    def add(self, pair: tuple[str, str]) -> None:
        h = hash(pair) & self._mask
        self._bits[h >> 3] |= 1 << (h & 7)
        self._count += 1

    def may_hold(self, pair: tuple[str, str]) -> bool:
        h = hash(pair) & self._mask
        return bool(self._bits[h >> 3] & (1 << (h & 7)))

    @property
    def full(self) -> bool:
        return self._count * self.BITS_PER_ID > self._mask + 1


class _Checkpointer:
    """PASSIVE WAL checkpoints on a thread of their own (see CHECKPOINT_WAL_BYTES)."""

    def __init__(self, path: Path, busy_timeout_s: float,
                 interval_s: float = CHECKPOINT_INTERVAL_S) -> None:
        self._path = path
        self._interval_s = interval_s
        self._last_start = time.monotonic()
        self._wal_path = path.with_name(path.name + "-wal")
        self._shm_path = path.with_name(path.name + "-shm")
        self._busy_timeout_s = busy_timeout_s
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._running: concurrent.futures.Future[None] | None = None
        self._conn: sqlite3.Connection | None = None  # used only on the thread
        self._next_poll = 0.0
        self.started = 0  # checkpoints handed to the thread (for tests and curiosity)
        self.last_seconds: float | None = None  # the last one's duration (for /metrics)

    def after_commit(self, conn: sqlite3.Connection) -> None:
        """After a COMMIT: finish a checkpoint the thread completed, or maybe start one."""
        running = self._running
        if running is not None:
            if running.done():
                self._running = None
                self._finish(conn)
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

    def on_timer(self, conn: sqlite3.Connection) -> None:
        """Every interval, COMMIT or not: what an idle server wrote reaches the database."""
        if conn.in_transaction:
            return  # a batch is open: its COMMIT's after_commit looks instead
        running = self._running
        if running is not None:
            if running.done():
                self._running = None
                self._finish(conn)
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
            with open(self._shm_path, "rb") as shm:
                header = shm.read(_SHM_HEADER_BYTES)
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
        """Wait for a running checkpoint, then close its connection and thread."""
        executor, self._executor = self._executor, None
        if executor is None:
            return
        executor.submit(self._close_connection)
        executor.shutdown(wait=True)
        self._running = None

    def _close_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


class SqliteStore(Store):
    """The ``Store`` in one SQLite file at ``path`` (its directory is created if missing).

    ``synchronous``: ``"normal"`` (survives process death) or ``"full"`` (survives power
    loss too). ``commit_interval_ms``: how long a batch stays open (0: until the next
    event-loop iteration). ``busy_timeout_ms``: how long to wait for a lock that some
    other program (an ``sqlite3`` shell, a backup) holds on the file. ``after_commit``:
    called right after each COMMIT has completed its batch's futures (whose callbacks
    run on the next loop turn), e.g. to schedule the flush that sends what they queue.
    """

    def __init__(self, path: Path, *, synchronous: str = "normal",
                 commit_interval_ms: float = 0.0, busy_timeout_ms: float = 2000.0,
                 after_commit: Callable[[], None] | None = None,
                 checkpoint_interval_s: float = CHECKPOINT_INTERVAL_S) -> None:
        if synchronous not in _SYNCHRONOUS:
            raise ValueError(f"synchronous must be one of {sorted(_SYNCHRONOUS)}, "
                             f"not {synchronous!r}")
        if commit_interval_ms < 0:
            raise ValueError("commit_interval_ms must be >= 0")
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self._synchronous = _SYNCHRONOUS[synchronous]
        self._commit_interval_s = commit_interval_ms / 1000
        self._busy_timeout_s = busy_timeout_ms / 1000
        self._conn: sqlite3.Connection | None = None
        self._lock_fd: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # The open batch: its futures in write order, and the scheduled COMMIT.
        self._pending: list[Commit] = []
        self._commit_handle: asyncio.Handle | None = None
        self._last_batch_size = 0  # writes in the previous COMMIT: busy or idle
        self._client_ids: _ClientIdFilter | None = None  # built at open
        # Each room's latest written seq (committed or in the open batch), read from the
        # table on a room's first append; forgotten when a batch is rolled back.
        self._room_seqs: dict[str, int] = {}
        self._checkpointer = _Checkpointer(self.path, self._busy_timeout_s,
                                           checkpoint_interval_s)
        self._checkpoint_interval_s = checkpoint_interval_s
        self._checkpoint_timer: asyncio.TimerHandle | None = None
        self._marked_open = False  # see _mark_open
        # Why the last COMMIT failed, until one succeeds (the server's /readyz).
        self.write_error: str | None = None
        self._after_commit = after_commit

    # --- lifecycle -------------------------------------------------------------------

    async def open(self) -> None:
        if self._conn is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._make_data_dir()
        self._take_lock()
        try:
            self._refuse_a_lost_half()
            had_wal = self._wal_path.exists()
            self._make_files_private()
            self._conn = self._connect()
            self._refuse_a_lost_wal(self._conn, had_wal)
            self._build_client_id_filter()
        except BaseException:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            self._release_lock()
            raise
        self._checkpoint_timer = self._loop.call_later(self._checkpoint_interval_s,
                                                       self._on_checkpoint_timer)
        logger.info("store open: %s (schema v%d, synchronous=%s)",
                    self.path, SCHEMA_VERSION, self._synchronous)

    def _on_checkpoint_timer(self) -> None:
        conn, loop = self._conn, self._loop
        if conn is None or loop is None:
            return
        self._checkpointer.on_timer(conn)
        self._checkpoint_timer = loop.call_later(self._checkpoint_interval_s,
                                                 self._on_checkpoint_timer)

    @property
    def last_checkpoint_seconds(self) -> float | None:
        return self._checkpointer.last_seconds

    @property
    def _wal_path(self) -> Path:
        return self.path.with_name(self.path.name + "-wal")

    def _refuse_a_lost_half(self) -> None:
        """A WAL without its database file: starting would make a new, empty database
        and SQLite would throw the WAL's messages away. Refuse, saying why."""
        wal = self._wal_path
        try:
            wal_bytes = wal.stat().st_size
        except FileNotFoundError:
            return
        try:
            db_bytes = self.path.stat().st_size
        except FileNotFoundError:
            db_bytes = 0
        if wal_bytes and not db_bytes:
            raise StoreError(
                f"{self.path.parent} holds {wal.name} but not {self.path.name}: the "
                f"database file is missing (a partial copy?), and the messages are in both "
                f"files together. Put {self.path.name} back beside it, or restore a backup "
                f"into a new directory (cfm admin restore); nothing was changed")

    def _refuse_a_lost_wal(self, conn: sqlite3.Connection, had_wal: bool) -> None:
        """A database file marked open (see APP_ID_OPEN) without a WAL beside it."""
        try:
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        except sqlite3.Error as e:
            raise StoreError(self._explain_open_error(e)) from e
        if app_id == APP_ID_OPEN and not had_wal:
            raise StoreError(
                f"{self.path} was copied (or left) without its {self._wal_path.name} file "
                f"while a server had it open: the messages written since its last "
                f"checkpoint are missing. Copy the -wal file too, or use a backup made with "
                f"cfm admin backup; if you know this copy is whole (sqlite3 .backup), cfm "
                f"admin restore {self.path} --data-dir NEWDIR takes it in. Nothing was "
                f"changed")

    def _mark_open(self, conn: sqlite3.Connection) -> None:
        """Before the first write (not at open: a database that turns out corrupt while
        loading must be left untouched): mark the database file itself as open."""
        self._marked_open = True
        try:
            conn.execute(f"PRAGMA application_id = {APP_ID_OPEN}")
            # Into the database file now, not at the next checkpoint: that is the point.
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        except sqlite3.Error as e:
            logger.warning("cannot mark %s as open: %s", self.path, e)

    async def flush(self) -> None:
        if self._commit_handle is None:
            return
        self._commit_handle.cancel()
        error = self._commit_batch()
        if error is not None:
            raise error

    async def close(self) -> None:
        conn = self._conn
        if conn is None:
            self._release_lock()
            return
        try:
            await self.flush()
        finally:
            self._conn = None
            self._client_ids = None
            self._room_seqs.clear()
            if self._checkpoint_timer is not None:
                self._checkpoint_timer.cancel()
                self._checkpoint_timer = None
            self._checkpointer.stop()
            try:
                # Keeps the query planner's statistics fresh; cheap when nothing changed.
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("PRAGMA optimize")
                _mark_closed(conn)
                conn.close()
            finally:
                self._release_lock()

    @contextlib.contextmanager
    def offline(self) -> Iterator[sqlite3.Connection]:
        """The database as a plain connection under the data directory's lock, without
        an event loop or group commit: for offline tools (``cfm admin``). Unlike open()
        it creates nothing: a missing or empty database is a StoreError, a directory a
        running server holds is a DataDirInUse."""
        if not self.path.is_file():
            raise StoreError(f"no cfm database in {self.path.parent} ({self.path.name} "
                             f"does not exist; cfm serve creates it when it first starts "
                             f"with this data directory)")
        self._take_lock()
        try:
            had_wal = self._wal_path.exists()
            self._make_files_private()
            conn = self._connect(create=False)
            try:
                yield conn
            finally:
                # The last connection's close copies the whole WAL in: whole again —
                # unless the WAL was lost before (APP_ID_OPEN): that stays for cfm serve
                # to refuse.
                if had_wal:
                    _mark_closed(conn)
                conn.close()
        finally:
            self._release_lock()

    def _make_files_private(self) -> None:
        """The database 0600 before SQLite opens it, whatever the umask: SQLite gives
        the -wal and -shm files it creates the database's mode. Files an older server
        left readable are tightened (see cfm_server/datadir.py)."""
        if self.path.exists():
            tighten(self.path)
        else:
            make_private_file(self.path)
        for suffix in ("-wal", "-shm"):
            tighten(self.path.with_name(self.path.name + suffix))

    def _make_data_dir(self) -> None:
        data_dir = self.path.parent
        try:
            make_private_dir(data_dir, warn=False)  # cfm serve warns once, in open_store
        except (FileExistsError, NotADirectoryError) as e:
            raise StoreError(
                f"cannot create the data directory {data_dir}: {e.filename or data_dir} "
                f"exists and is not a directory; choose another data directory"
            ) from e
        except PermissionError as e:
            raise StoreError(
                f"cannot create the data directory {data_dir}: permission denied; create it "
                f"yourself or choose another data directory"
            ) from e
        except OSError as e:
            raise StoreError(f"cannot create the data directory {data_dir}: {e}") from e
        if not os.access(data_dir, os.W_OK | os.X_OK):
            raise StoreError(
                f"the data directory {data_dir} is not writable by this user; fix its "
                f"permissions or choose another data directory"
            )
        if self.path.is_dir():
            raise StoreError(f"the database path {self.path} is a directory, not a file")
        if self.path.exists() and not os.access(self.path, os.R_OK | os.W_OK):
            raise StoreError(
                f"the database file {self.path} is not readable and writable by this user; "
                f"fix its permissions"
            )

    def _take_lock(self) -> None:
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, FILE_MODE)
        except OSError as e:
            raise StoreError(f"cannot create the lock file {self.lock_path}: "
                             f"{e.strerror}") from e
        with contextlib.suppress(OSError):
            os.fchmod(fd, FILE_MODE)  # O_CREAT's mode went through the umask
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            raise DataDirInUse(
                f"{self.path} is in use by another cfm server"
                f"{f' (pid {holder})' if holder else ''}: it holds {self.lock_path}. "
                f"Stop that server first, or give this one another data directory.",
                int(holder) if holder else None,
            ) from None
        except OSError as e:
            os.close(fd)
            raise StoreError(f"cannot lock {self.lock_path}: {e.strerror}") from e
        # Who holds the lock, for the message above; advisory only.
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            # Closing the descriptor drops the flock; the file stays for the next server.
            os.close(self._lock_fd)
            self._lock_fd = None

    def _connect(self, *, create: bool = True) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(self.path, timeout=self._busy_timeout_s,
                                   isolation_level=None)
        except sqlite3.Error as e:
            raise StoreError(self._explain_open_error(e)) from e
        try:
            # The first read of the header: a file that is not SQLite fails here, before
            # anything could write to it.
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path} has schema version {version}, written by a newer cfm "
                    f"(this one knows up to {SCHEMA_VERSION}); upgrade cfm"
                )
            if version == 0 and tables:
                raise StoreError(
                    f"{self.path} is an SQLite database but not a cfm one; it was left "
                    f"untouched; move it away or choose another data directory"
                )
            if version == 0 and not create:
                raise StoreError(f"{self.path} is empty, not a cfm database")
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise StoreError(
                    f"cannot switch {self.path} to WAL mode (got {mode!r}); put the data "
                    f"directory on a local file system"
                )
            conn.execute(f"PRAGMA synchronous={self._synchronous}")
            conn.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
            self._migrate(conn, version)
            # In WAL mode reads get past another program's write lock (an sqlite3 shell
            # inside a transaction): take the write lock once now, so such a lock is a
            # clear error at start-up rather than failed acks later.
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("ROLLBACK")
        except StoreError:
            conn.close()
            raise
        except sqlite3.Error as e:
            conn.close()
            raise StoreError(self._explain_open_error(e)) from e
        return conn

    def _migrate(self, conn: sqlite3.Connection, version: int) -> None:
        if 0 < version < SCHEMA_VERSION:
            self._keep_before_migration(conn, version)
        for target in range(version + 1, SCHEMA_VERSION + 1):
            try:
                conn.executescript(
                    f"BEGIN IMMEDIATE; {MIGRATIONS[target - 1]}; "
                    f"PRAGMA user_version = {target}; COMMIT;"
                )
            except sqlite3.Error:
                if conn.in_transaction:
                    conn.rollback()
                raise
            logger.info("store schema migrated to v%d: %s", target, self.path)

    def _keep_before_migration(self, conn: sqlite3.Connection, version: int) -> None:
        """A whole copy of the database as it was (``cfm.sqlite3.v<N>.bak``, 0600) before
        an upgrade changes its schema in place, so going back to the older cfm is a
        ``cfm admin restore`` of it. Refuses the upgrade if the copy cannot be made."""
        backup = self.path.with_name(f"{self.path.name}.v{version}.bak")
        partial = backup.with_name(backup.name + ".partial")
        make_private_file(partial)
        try:
            target = sqlite3.connect(partial, isolation_level=None)
            try:
                conn.backup(target)
                target.execute("PRAGMA journal_mode=DELETE")
                target.execute(f"PRAGMA application_id = {APP_ID_CLOSED}")
            finally:
                target.close()
            os.replace(partial, backup)
        except (sqlite3.Error, OSError) as e:
            with contextlib.suppress(OSError):
                partial.unlink()
            raise StoreError(f"cannot keep a copy of {self.path} (schema v{version}) before "
                             f"upgrading it to v{SCHEMA_VERSION}: {e}; free some space and "
                             f"start again") from e
        logger.warning("upgrading %s from schema v%d to v%d; the database as it was is kept "
                       "in %s (restore it with cfm admin restore to go back to the older cfm)",
                       self.path, version, SCHEMA_VERSION, backup)

    def _explain_open_error(self, e: sqlite3.Error) -> str:
        name = getattr(e, "sqlite_errorname", "")
        untouched = "it was left untouched; move it away or choose another data directory"
        if name == "SQLITE_NOTADB":
            return f"{self.path} is not an SQLite database ({e}); {untouched}"
        if name.startswith("SQLITE_CORRUPT"):
            return (f"{self.path} is corrupt ({e}); {untouched}, and restore the last backup "
                    f"into a new one (cfm admin restore BACKUP --data-dir NEWDIR)")
        if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
            return (f"{self.path} is locked by another process ({e}); close whatever holds "
                    f"it (an sqlite3 shell, a backup tool) and try again")
        if name.startswith("SQLITE_READONLY"):
            return f"{self.path} is read-only ({e}); fix the permissions of the file"
        if name.startswith("SQLITE_FULL"):
            return f"the disk holding {self.path} is full ({e}); free some space"
        if name.startswith("SQLITE_CANTOPEN"):
            return f"cannot open {self.path} ({e}); check the data directory"
        return f"cannot open {self.path}: {e}"

    # --- group commit ----------------------------------------------------------------

    def _write(self, sql: str, params: tuple[Any, ...], *,
               rejected: str | None = None) -> Commit:
        """Run one write in the open batch. ``rejected``: why zero changed rows is an error."""
        conn, loop = self._conn, self._loop
        if conn is None or loop is None:
            future: Commit = asyncio.get_running_loop().create_future()
            future.set_exception(StoreError("the store is not open"))
            return future
        future = loop.create_future()
        try:
            if self._commit_handle is None:
                if not self._marked_open:
                    self._mark_open(conn)
                conn.execute("BEGIN IMMEDIATE")
                self._commit_handle = self._schedule_commit(loop)
            cursor = conn.execute(sql, params)
        except sqlite3.IntegrityError as e:
            # Only this statement is undone; the rest of the batch goes on.
            future.set_exception(StoreError(f"write rejected: {e}"))
            return future
        except sqlite3.Error as e:
            self._pending.append(future)
            self._fail_batch(e)
            return future
        if rejected is not None and cursor.rowcount == 0:
            future.set_exception(StoreError(f"write rejected: {rejected}"))
            return future
        self._pending.append(future)
        return future

    def _schedule_commit(self, loop: asyncio.AbstractEventLoop) -> asyncio.Handle:
        if self._commit_interval_s:
            return loop.call_later(self._commit_interval_s, self._commit_batch)
        if self._last_batch_size >= BUSY_BATCH:
            return loop.call_later(BUSY_WINDOW_S, self._commit_batch)
        return loop.call_soon(self._commit_batch)

    def _commit_batch(self) -> StoreError | None:
        self._commit_handle = None
        self._last_batch_size = len(self._pending)
        conn = self._conn
        if conn is None:
            return None
        if not conn.in_transaction:
            # SQLite rolls a transaction back by itself after some errors (SQLITE_FULL,
            # SQLITE_IOERR); the writes waiting on it must hear that they were lost.
            if self._pending:
                return self._fail_batch(sqlite3.OperationalError("transaction rolled back"))
            return None
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as e:
            return self._fail_batch(e)
        self.write_error = None
        futures, self._pending = self._pending, []
        for future in futures:
            if not future.done():  # its waiter may have been cancelled
                future.set_result(None)
        if futures and self._after_commit is not None:
            try:
                self._after_commit()
            except Exception:  # the batch is committed whatever the hook does
                logger.exception("after_commit hook failed")
        self._checkpointer.after_commit(conn)
        return None

    def _fail_batch(self, cause: sqlite3.Error) -> StoreError:
        self._room_seqs.clear()  # the batch's appends are gone: read the seqs again
        if self._commit_handle is not None:
            self._commit_handle.cancel()
            self._commit_handle = None
        conn = self._conn
        if conn is not None and conn.in_transaction:
            try:
                conn.rollback()
            except sqlite3.Error:
                logger.exception("store rollback failed: %s", self.path)
        futures, self._pending = self._pending, []
        self.write_error = str(cause)
        error = StoreError(f"{self.path}: commit failed, {len(futures)} writes rolled back: "
                           f"{cause}")
        logger.error("%s", error)
        for future in futures:
            if not future.done():
                future.set_exception(error)
        return error

    # --- start-up snapshot ------------------------------------------------------------

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        conn = self._conn
        if conn is None:
            raise StoreError("the store is not open")
        try:
            return conn.execute(sql, params).fetchall()
        except sqlite3.Error as e:
            raise StoreError(f"{self.path}: read failed: {e}") from e

    def load_users(self) -> Iterable[UserRecord]:
        rows = self._query(
            "SELECT name, token_hash, display, psm, status, bot, created_ms FROM users")
        return [UserRecord(n, h, d, p, s, bool(b), c) for n, h, d, p, s, b, c in rows]

    def load_rooms(self) -> Iterable[RoomRecord]:
        rows = self._query(
            "SELECT room, coalesce((SELECT max(seq) FROM messages m WHERE m.room = r.room), 0),"
            " epoch FROM rooms r")
        rooms = [RoomRecord(room, seq, epoch) for room, seq, epoch in rows]
        known = {room.room for room in rooms}
        rooms += [RoomRecord(room, seq, "") for room, seq in self._rooms_with_messages()
                  if room not in known]
        return rooms

    def _rooms_with_messages(self) -> Iterable[tuple[str, int]]:
        """(room, latest seq) for each room in the messages table: one index seek per
        room (a skip scan), not a pass over every message."""
        room = ""
        while rows := self._query(
            "SELECT room, max(seq) FROM messages WHERE room ="
            " (SELECT min(room) FROM messages WHERE room > ?)", (room,)):
            room, seq = rows[0]
            if room is None:
                return
            yield room, seq

    def load_members(self) -> Iterable[tuple[str, str]]:
        return [(room, name) for room, name in self._query("SELECT room, name FROM members")]

    def load_contacts(self) -> Iterable[ContactRecord]:
        rows = self._query("SELECT owner, name, in_list, blocked FROM contacts")
        return [ContactRecord(o, n, bool(i), bool(b)) for o, n, i, b in rows]

    def load_reads(self) -> Iterable[tuple[str, str, int]]:
        return [(n, r, s) for n, r, s in self._query("SELECT name, room, seq FROM reads")]

    def load_invite_uses(self) -> dict[str, int]:
        return dict(self._query("SELECT nonce, used FROM invite_uses"))

    # --- writes ----------------------------------------------------------------------

    def put_invite_use(self, nonce: str, used: int) -> Commit:
        return self._write("INSERT OR REPLACE INTO invite_uses (nonce, used) VALUES (?, ?)",
                           (nonce, used))

    def put_user(self, user: UserRecord) -> Commit:
        return self._write(
            "INSERT OR REPLACE INTO users (name, token_hash, display, psm, status, bot,"
            " created_ms) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (user.name, user.token_hash, user.display, user.psm, user.status, int(user.bot),
             user.created_ms))

    def put_room(self, room: RoomRecord) -> Commit:
        return self._write(
            "INSERT INTO rooms (room, epoch) VALUES (?, ?)"
            " ON CONFLICT (room) DO UPDATE SET epoch = excluded.epoch",
            (room.room, room.epoch))

    def add_member(self, room: str, user: str) -> Commit:
        return self._write("INSERT OR IGNORE INTO members (room, name) VALUES (?, ?)",
                           (room, user))

    def remove_member(self, room: str, user: str) -> Commit:
        return self._write("DELETE FROM members WHERE room = ? AND name = ?", (room, user))

    def put_contact(self, contact: ContactRecord) -> Commit:
        if not (contact.in_list or contact.blocked):
            return self._write("DELETE FROM contacts WHERE owner = ? AND name = ?",
                               (contact.owner, contact.name))
        return self._write(
            "INSERT OR REPLACE INTO contacts (owner, name, in_list, blocked)"
            " VALUES (?, ?, ?, ?)",
            (contact.owner, contact.name, int(contact.in_list), int(contact.blocked)))

    def set_read(self, user: str, room: str, seq: int) -> Commit:
        return self._write("INSERT OR REPLACE INTO reads (name, room, seq) VALUES (?, ?, ?)",
                           (user, room, seq))

    def append(self, msg: StoredMsg) -> Commit:
        params = (msg.room, msg.seq, msg.sender, msg.text, msg.ts, msg.kind, msg.id,
                  1 if msg.hidden else None)
        if self._conn is None:
            return self._write(_APPEND, params)  # fails: the store is not open
        try:
            expected = self._next_seq(msg.room)
        except StoreError as e:
            return self._failed(e)
        if msg.seq != expected:
            return self._failed(StoreError(
                f"write rejected: message {msg.room}#{msg.seq} is not the room's next seq"))
        if msg.id is not None:
            self._note_client_id((msg.sender, msg.id))
        commit = self._write(_APPEND, params)
        if not commit.done():  # written into the open batch (a failure completes at once)
            self._room_seqs[msg.room] = msg.seq
        return commit

    def _next_seq(self, room: str) -> int:
        seq = self._room_seqs.get(room)
        if seq is None:
            seq = self._query("SELECT coalesce(max(seq), 0) FROM messages WHERE room = ?",
                              (room,))[0][0]
            self._room_seqs[room] = seq
        return seq + 1

    def _failed(self, error: StoreError) -> Commit:
        loop = self._loop or asyncio.get_running_loop()
        future: Commit = loop.create_future()
        future.set_exception(error)
        return future

    # --- the client-id filter ---------------------------------------------------------

    def _build_client_id_filter(self) -> None:
        """(Re)build the filter from every stored client id (at open, and to grow it)."""
        count = self._query("SELECT count(client_id) FROM messages")[0][0]
        conn = self._conn
        assert conn is not None
        try:
            pairs = conn.execute(
                "SELECT sender, client_id FROM messages WHERE client_id IS NOT NULL")
            self._client_ids = _ClientIdFilter(pairs, count)
        except sqlite3.Error as e:
            raise StoreError(f"{self.path}: read failed: {e}") from e

    def _note_client_id(self, pair: tuple[str, str]) -> None:
        # Noted before the write: a write that fails later leaves a stale bit, which
        # only costs a query.
        client_ids = self._client_ids
        if client_ids is None:
            return
        client_ids.add(pair)
        if client_ids.full:
            try:
                self._build_client_id_filter()  # sees this pair once it is written
            except StoreError as e:
                logger.warning("%s; looking every client id up in the table", e)
                self._client_ids = None
                return
            self._client_ids.add(pair)  # type: ignore[union-attr]

    # --- reads -----------------------------------------------------------------------

    def find_message(self, sender: str, client_id: str) -> StoredMsg | None:
        client_ids = self._client_ids
        if client_ids is not None and not client_ids.may_hold((sender, client_id)):
            return None
        rows = self._query(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE sender = ? AND client_id = ?",
            (sender, client_id))
        return _stored(rows[0]) if rows else None

    def history_before(self, room: str, before: int | None, limit: int) -> list[StoredMsg]:
        if limit <= 0:  # SQLite reads a negative LIMIT as "no limit"
            return []
        if before is None:
            rows = self._query(
                f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE room = ?"
                " ORDER BY seq DESC LIMIT ?", (room, limit))
        else:
            rows = self._query(
                f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE room = ? AND seq < ?"
                " ORDER BY seq DESC LIMIT ?", (room, before, limit))
        return [_stored(row) for row in reversed(rows)]

    def history_after(self, room: str, after: int, limit: int) -> list[StoredMsg]:
        if limit <= 0:
            return []
        rows = self._query(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE room = ? AND seq > ?"
            " ORDER BY seq LIMIT ?", (room, after, limit))
        return [_stored(row) for row in rows]

    # --- retention -------------------------------------------------------------------

    def retention_cut(self, room: str, min_ts: int | None,
                      max_bytes: int | None) -> tuple[int, int] | None:
        first, latest = self._query(
            "SELECT min(seq), max(seq) FROM messages WHERE room = ?", (room,))[0]
        if first is None or first == latest:
            return None
        cut = 0
        if min_ts is not None:
            row = self._query("SELECT min(seq) FROM messages WHERE room = ? AND ts >= ?",
                              (room, min_ts))[0][0]
            cut = latest if row is None else row
        if max_bytes is not None:
            # The newest seq whose message no longer fits, counting from the newest down.
            rows = self._query(
                "SELECT seq FROM (SELECT seq, sum(length(CAST(text AS BLOB)))"
                " OVER (ORDER BY seq DESC) AS kept FROM messages WHERE room = ?)"
                " WHERE kept > ? ORDER BY seq DESC LIMIT 1", (room, max_bytes))
            if rows:
                cut = max(cut, rows[0][0] + 1)
        cut = min(cut, latest)
        return (first, cut) if cut > first else None

    def delete_before(self, room: str, seq: int) -> Commit:
        return self._write("DELETE FROM messages WHERE room = ? AND seq < ?", (room, seq))


def _stored(row: tuple[Any, ...]) -> StoredMsg:
    """A ``messages`` row as a StoredMsg (its ``hidden`` column is NULL or 1)."""
    if row[7] is None:
        return StoredMsg(*row)
    return StoredMsg(*row[:7], True)


def _mark_closed(conn: sqlite3.Connection) -> None:
    """Before the last connection closes (which copies the WAL into the database file):
    the file is whole, whether the server closed it or an admin tool after a crash."""
    with contextlib.suppress(sqlite3.Error):
        if conn.in_transaction:
            conn.rollback()
        if conn.execute("PRAGMA application_id").fetchone()[0] == APP_ID_OPEN:
            conn.execute(f"PRAGMA application_id = {APP_ID_CLOSED}")


def _read_pid(fd: int) -> str:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return ""
    return text if text.isdigit() else ""
