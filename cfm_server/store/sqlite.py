"""``SqliteStore``: the embedded default store, one SQLite file in WAL mode.

An acknowledged write is durable: ``append`` and the other writes return a Commit that
completes only once their COMMIT is in the WAL. The parts, each in a module of its own:

- ``groupcommit``: many writes share one COMMIT; durability and the fsync policy.
- ``checkpoint``: WAL checkpoints on a thread of their own, off the event loop.
- ``sqlite_open``: checks before and while opening the file; errors that name the fix.
- ``sqlite_schema``: the tables, migrations, and the open/closed mark in the header.
- ``lockfile``: one server per data directory (``flock`` on ``<name>.lock``).
- ``idfilter``: a retry's (sender, client id) looked up without a query per ``say``.
- ``sqlite_reads``: the reads (start-up snapshot, history, retention cut).
- ``searchindex``, ``searchindexer`` and ``sqlite_search``: the search index, a file of
  its own kept by a process of its own, off the write path; this module only tells it,
  after each COMMIT, which rooms have new messages and where retention cut.

This module keeps the lifecycle, the writes, and each room's latest seq.

The data directory holds ``<name>``, its ``-wal``/``-shm`` files and ``<name>.lock``, and
the search index ``<stem>.search<suffix>`` with its own ``-wal``/``-shm``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import sqlite3
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import TypeVar

from cfm_common.frames import StoredMsg
from cfm_common.rules import ChangeKind
from cfm_server.store.base import (
    Commit,
    ContactRecord,
    RoomRecord,
    Store,
    StoreError,
    UserRecord,
)
from cfm_server.store.checkpoint import CHECKPOINT_INTERVAL_S, Checkpointer
from cfm_server.store.groupcommit import GroupCommit
from cfm_server.store.idfilter import ClientIdFilter, read_client_id_filter
from cfm_server.store.lockfile import DataDirInUse, DataDirLock
from cfm_server.store.searchindex import SearchIndex, remove_index
from cfm_server.store.sqlite_open import (
    SYNCHRONOUS,
    connect,
    make_data_dir,
    make_files_private,
    refuse_a_lost_half,
    refuse_a_lost_wal,
    wal_path,
)
from cfm_server.store.sqlite_reads import MESSAGE_COLUMNS, SqliteReads
from cfm_server.store.sqlite_schema import SCHEMA_VERSION, mark_closed, mark_open
from cfm_server.store.sqlite_search import SqliteSearch

# DataDirInUse is imported from here by callers that only know the store (cfm_tui).
__all__ = ["DataDirInUse", "SqliteStore"]

logger = logging.getLogger(__name__)
T = TypeVar("T")

# A plain INSERT: the store refuses a gap or a repeated seq before it, from each room's
# latest seq kept in memory (``SqliteStore._next_seq``). It used to be a guard in the
# statement itself (INSERT ... SELECT ... WHERE seq = 1 + max(seq)), a third of the
# INSERT's cost; the primary key still refuses a repeated seq, and the lock file makes
# this connection the only writer.
_APPEND = ("INSERT INTO messages (room, seq, sender, text, ts, kind, client_id, hidden)"
           " VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
# A message with a reply, mentions or a change (schema v4): the plain one above stays the
# say's, without the columns it leaves NULL.
_APPEND_FULL = (f"INSERT INTO messages ({MESSAGE_COLUMNS})"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
# What a change entry does to its target, in the entry's batch (see Store.append).
_EDIT = "UPDATE messages SET text = ?, edited = ? WHERE room = ? AND seq = ?"
_DELETE = ("UPDATE messages SET text = '', deleted = 1, edited = NULL, mentions = NULL"
           " WHERE room = ? AND seq = ?")
_ERASE_EDITS = ("UPDATE messages SET text = '' WHERE room = ? AND target = ?"
                " AND change_kind = 'edit'")
_DROP_REACTIONS = "DELETE FROM reactions WHERE room = ? AND seq = ?"
_DROP_MENTIONS = "DELETE FROM mentions WHERE room = ? AND seq = ?"
_REACT = ("INSERT OR IGNORE INTO reactions (room, seq, name, emoji, added)"
          " VALUES (?, ?, ?, ?, ?)")
_UNREACT = "DELETE FROM reactions WHERE room = ? AND seq = ? AND name = ? AND emoji = ?"
_MENTION = "INSERT OR IGNORE INTO mentions (room, seq, name) VALUES (?, ?, ?)"


class SqliteStore(SqliteReads, SqliteSearch, Store):
    """The ``Store`` in one SQLite file at ``path`` (its directory is created if missing).

    ``synchronous``: ``"normal"`` (survives process death) or ``"full"`` (survives power
    loss too). ``commit_interval_ms``: how long a batch stays open (0: until the next
    event-loop iteration). ``busy_timeout_ms``: how long to wait for a lock that some
    other program (an ``sqlite3`` shell, a backup) holds on the file. ``after_commit``:
    called right after each COMMIT has completed its batch's futures (whose callbacks
    run on the next loop turn), e.g. to schedule the flush that sends what they queue.
    ``search``: keep the search index (off: ``search`` raises StoreError, and an index
    file left from before is deleted at open).
    """

    def __init__(self, path: Path, *, synchronous: str = "normal",
                 commit_interval_ms: float = 0.0, busy_timeout_ms: float = 2000.0,
                 after_commit: Callable[[], None] | None = None,
                 checkpoint_interval_s: float = CHECKPOINT_INTERVAL_S,
                 search: bool = True) -> None:
        if synchronous not in SYNCHRONOUS:
            raise ValueError(f"synchronous must be one of {sorted(SYNCHRONOUS)}, "
                             f"not {synchronous!r}")
        if commit_interval_ms < 0:
            raise ValueError("commit_interval_ms must be >= 0")
        self.path = Path(path)
        self._lock = DataDirLock(self.path)
        self.lock_path = self._lock.path
        self._synchronous = SYNCHRONOUS[synchronous]
        self._busy_timeout_s = busy_timeout_ms / 1000
        self._conn: sqlite3.Connection | None = None
        self._client_ids: ClientIdFilter | None = None  # built at open
        # Each room's latest written seq (committed or in the open batch), read from the
        # table on a room's first append; forgotten when a batch is rolled back.
        self._room_seqs: dict[str, int] = {}
        # For the search index, handed over after each COMMIT: the rooms the batch
        # appended to (their newest seq) and retention's cuts.
        self._search = SearchIndex(self.path, busy_timeout_s=self._busy_timeout_s) \
            if search else None
        self._batch_rooms: dict[str, int] = {}
        self._batch_cuts: dict[str, int] = {}
        self._after_commit = after_commit
        self._checkpointer = Checkpointer(self.path, self._busy_timeout_s,
                                          checkpoint_interval_s)
        self._batch = GroupCommit(
            self.path, interval_s=commit_interval_ms / 1000, checkpointer=self._checkpointer,
            # Not at open: a database that turns out corrupt while loading must be left
            # untouched.
            before_first_write=functools.partial(mark_open, path=self.path),
            on_rollback=self._rolled_back, after_commit=self._committed)

    @property
    def write_error(self) -> str | None:
        """Why the last COMMIT failed, until one succeeds (the server's /readyz)."""
        return self._batch.write_error

    @property
    def last_checkpoint_seconds(self) -> float | None:
        return self._checkpointer.last_seconds

    # --- lifecycle -------------------------------------------------------------------

    async def open(self) -> None:
        if self._conn is not None:
            return
        loop = asyncio.get_running_loop()
        make_data_dir(self.path)
        self._lock.take()
        try:
            refuse_a_lost_half(self.path)
            had_wal = wal_path(self.path).exists()
            make_files_private(self.path)
            self._conn = self._connect()
            refuse_a_lost_wal(self._conn, self.path, had_wal)
            self._build_client_id_filter()
        except BaseException:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            self._lock.release()
            raise
        try:
            if self._search is not None:
                self._search.open()
            elif remove_index(self.path):
                logger.info("search is off: removed the search index beside %s", self.path)
        except BaseException:
            self._conn.close()
            self._conn = None
            self._lock.release()
            raise
        self._batch.attach(self._conn, loop)
        self._checkpointer.watch(self._conn, loop)
        logger.info("store open: %s (schema v%d, synchronous=%s)",
                    self.path, SCHEMA_VERSION, self._synchronous)

    def _connect(self, *, create: bool = True) -> sqlite3.Connection:
        return connect(self.path, synchronous=self._synchronous,
                       busy_timeout_s=self._busy_timeout_s, create=create)

    async def flush(self) -> None:
        self._batch.commit_now()

    async def close(self) -> None:
        conn = self._conn
        if conn is None:
            self._lock.release()
            return
        try:
            await self.flush()
        finally:
            if self._search is not None:
                await self._search.close()  # before the last connection to the database
            self._conn = None
            self._batch.detach()
            self._client_ids = None
            self._room_seqs.clear()
            self._checkpointer.stop()
            try:
                # Keeps the query planner's statistics fresh; cheap when nothing changed.
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("PRAGMA optimize")
                mark_closed(conn)
                conn.close()
            finally:
                self._checkpointer.release()  # after the last connection, not before
                self._lock.release()

    @contextlib.contextmanager
    def offline(self) -> Iterator[sqlite3.Connection]:
        """The database as a plain connection under the data directory's lock, without
        an event loop or group commit: for offline tools (``cfm admin``). Unlike open()
        it creates nothing: a missing or empty database is a StoreError, a directory a
        running server holds is a DataDirInUse."""
        if not self.path.is_file():
            raise StoreError(f"no cfm database in {self.path.parent} ({self.path.name} "
                             f"does not exist; cfm serve creates it when it first starts "
                             f"with this data directory; a cluster's data is in Redis: --redis URL "
                             f"or CFM_REDIS_URL, where a command takes it)")
        self._lock.take()
        try:
            had_wal = wal_path(self.path).exists()
            make_files_private(self.path)
            conn = self._connect(create=False)
            try:
                yield conn
            finally:
                # The last connection's close copies the whole WAL in: whole again —
                # unless the WAL was lost before (APP_ID_OPEN): that stays for cfm serve
                # to refuse.
                if had_wal:
                    mark_closed(conn)
                conn.close()
        finally:
            self._lock.release()

    # --- writes ----------------------------------------------------------------------

    def count_invite_use(self, nonce: str) -> Commit:
        return self._batch.write(
            "INSERT INTO invite_uses (nonce, used) VALUES (?, 1)"
            " ON CONFLICT (nonce) DO UPDATE SET used = used + 1", (nonce,))

    def put_user(self, user: UserRecord) -> Commit:
        return self._batch.write(
            "INSERT OR REPLACE INTO users (name, token_hash, display, psm, status, bot,"
            " created_ms) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (user.name, user.token_hash, user.display, user.psm, user.status, int(user.bot),
             user.created_ms))

    def put_room(self, room: RoomRecord) -> Commit:
        return self._batch.write(
            "INSERT INTO rooms (room, epoch) VALUES (?, ?)"
            " ON CONFLICT (room) DO UPDATE SET epoch = excluded.epoch",
            (room.room, room.epoch))

    def add_member(self, room: str, user: str) -> Commit:
        return self._batch.write(
            "INSERT OR IGNORE INTO members (room, name) VALUES (?, ?)", (room, user))

    def remove_member(self, room: str, user: str) -> Commit:
        return self._batch.write(
            "DELETE FROM members WHERE room = ? AND name = ?", (room, user))

    def put_contact(self, contact: ContactRecord) -> Commit:
        if not (contact.in_list or contact.blocked):
            return self._batch.write("DELETE FROM contacts WHERE owner = ? AND name = ?",
                                     (contact.owner, contact.name))
        return self._batch.write(
            "INSERT OR REPLACE INTO contacts (owner, name, in_list, blocked)"
            " VALUES (?, ?, ?, ?)",
            (contact.owner, contact.name, int(contact.in_list), int(contact.blocked)))

    def set_read(self, user: str, room: str, seq: int) -> Commit:
        return self._batch.write(
            "INSERT OR REPLACE INTO reads (name, room, seq) VALUES (?, ?, ?)", (user, room, seq))

    def append(self, msg: StoredMsg) -> Commit:
        plain = msg.reply is None and msg.mentions is None and msg.change is None
        if plain:
            sql = _APPEND
            params: tuple[object, ...] = (msg.room, msg.seq, msg.sender, msg.text, msg.ts,
                                          msg.kind, msg.id, 1 if msg.hidden else None)
        else:
            sql = _APPEND_FULL
            params = (msg.room, msg.seq, msg.sender, msg.text, msg.ts, msg.kind, msg.id,
                      1 if msg.hidden else None, msg.reply,
                      " ".join(msg.mentions) if msg.mentions else None, msg.change,
                      msg.target, msg.emoji, None, None)
        if self._conn is None:
            return self._batch.write(sql, params)  # fails: the store is not open
        try:
            expected = self._next_seq(msg.room)
        except StoreError as e:
            return self._batch.failed(e)
        if msg.seq != expected:
            return self._batch.failed(StoreError(
                f"write rejected: message {msg.room}#{msg.seq} is not the room's next seq"))
        if msg.id is not None:
            self._note_client_id((msg.sender, msg.id))
        commit = self._batch.write(sql, params)
        if not commit.done():  # written into the open batch (a failure completes at once)
            self._room_seqs[msg.room] = msg.seq
            self._batch_rooms[msg.room] = msg.seq
            if not plain:
                self._apply(msg)
        return commit

    def _apply(self, msg: StoredMsg) -> None:
        """A message's mentions and a change entry's change, in the message's batch: they
        commit or roll back with it (whose Commit the caller watches)."""
        room, target = msg.room, msg.target
        writes: list[tuple[str, tuple[object, ...]]] = []
        if msg.mentions and not msg.hidden:
            writes += [(_MENTION, (room, msg.seq, name)) for name in msg.mentions]
        change = msg.change
        if msg.hidden and change != ChangeKind.DELETE:
            change = None  # across a block: only its sender's copy holds it (Store.append)
        if change == ChangeKind.EDIT:
            writes.append((_EDIT, (msg.text, msg.ts, room, target)))
        elif change == ChangeKind.DELETE:
            writes += [(_DELETE, (room, target)), (_ERASE_EDITS, (room, target)),
                       (_DROP_REACTIONS, (room, target)), (_DROP_MENTIONS, (room, target))]
        elif change == ChangeKind.REACT:
            writes.append((_REACT, (room, target, msg.sender, msg.emoji, msg.seq)))
        elif change == ChangeKind.UNREACT:
            writes.append((_UNREACT, (room, target, msg.sender, msg.emoji)))
        for sql, params in writes:
            # A failure fails the whole batch, the message's own Commit included.
            self._batch.write(sql, params).add_done_callback(_consume)

    def put_moderator(self, room: str, name: str, creator: bool) -> Commit:
        return self._batch.write(
            "INSERT OR REPLACE INTO moderators (room, name, creator) VALUES (?, ?, ?)",
            (room, name, int(creator)))

    def remove_moderator(self, room: str, name: str) -> Commit:
        return self._batch.write(
            "DELETE FROM moderators WHERE room = ? AND name = ?", (room, name))

    def drop_notices(self, name: str) -> Commit:
        return self._batch.write("DELETE FROM notices WHERE name = ?", (name,))

    def alone(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """``work(conn)`` on the store's connection in a transaction of its own, after
        the open batch's COMMIT (``GroupCommit.alone``). What the store keeps in memory
        of rooms' seqs is read again afterwards (``work`` may move messages)."""
        try:
            return self._batch.alone(work)
        finally:
            self._room_seqs.clear()

    def rooms_moved(self, rooms: Collection[str]) -> None:
        """``rooms``' messages were moved away by ``alone`` (a removed user's DMs): the
        search index forgets them."""
        if self._search is not None and rooms:
            self._search.forget(rooms)

    def _committed(self) -> None:
        """After each COMMIT: the search index learns what it may now read. A dict
        handed over, nothing more: indexing happens in the indexer's process."""
        search = self._search
        if search is not None and (self._batch_rooms or self._batch_cuts):
            search.note(self._batch_rooms, self._batch_cuts)
            self._batch_rooms = {}
            self._batch_cuts = {}
        if self._after_commit is not None:
            self._after_commit()

    def _rolled_back(self) -> None:
        self._room_seqs.clear()
        self._batch_rooms.clear()
        self._batch_cuts.clear()

    def _next_seq(self, room: str) -> int:
        seq = self._room_seqs.get(room)
        if seq is None:
            seq = self._query("SELECT coalesce(max(seq), 0) FROM messages WHERE room = ?",
                              (room,))[0][0]
            self._room_seqs[room] = seq
        return seq + 1

    # --- the client-id filter ---------------------------------------------------------

    def _build_client_id_filter(self) -> None:
        """(Re)build the filter from every stored client id (at open, and to grow it)."""
        conn = self._conn
        assert conn is not None
        self._client_ids = read_client_id_filter(conn, self.path)

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

    # --- retention -------------------------------------------------------------------

    def delete_before(self, room: str, seq: int) -> Commit:
        for table in ("reactions", "mentions"):
            self._batch.write(f"DELETE FROM {table} WHERE room = ? AND seq < ?",
                              (room, seq)).add_done_callback(_consume)
        commit = self._batch.write(
            "DELETE FROM messages WHERE room = ? AND seq < ?", (room, seq))
        if not commit.done():
            self._batch_cuts[room] = max(seq, self._batch_cuts.get(room, 0))
        return commit


def _consume(commit: Commit) -> None:
    """A write whose failure another Commit of its batch reports: retrieve its error."""
    if not commit.cancelled():
        commit.exception()
