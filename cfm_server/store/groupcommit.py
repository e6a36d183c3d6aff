"""Group commit: many writes share one COMMIT, and each learns when its data is durable.

Durability. In WAL mode a COMMIT appends the transaction to the ``-wal`` file with
``write()``; from then on the data is in the kernel's page cache, so it survives the death
of the process (a crash, an OOM kill, SIGKILL) even with ``synchronous=NORMAL``, which
only skips the ``fsync``. That is the promise behind an ``ack``. ``synchronous="full"``
also fsyncs the WAL on every commit, so acknowledged messages survive a power cut or a
kernel crash too, at the price of one fsync per group commit. Neither setting can corrupt
the database; NORMAL may only lose the last transactions on power loss.

Batching. Every write runs at once inside an open transaction, so a read right after
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
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cfm_server.store.base import Commit, StoreError
from cfm_server.store.checkpoint import Checkpointer

logger = logging.getLogger(__name__)

# The adaptive group-commit window (see the module docstring): a batch this big means the
# server is busy, and the next COMMIT waits this long to gather more writes. A COMMIT
# writes every page its batch dirtied, so fewer, bigger batches write fewer pages per
# message (several messages of a room share a leaf page).
BUSY_BATCH = 8
BUSY_WINDOW_S = 0.001


class GroupCommit:
    """The open batch of the store's one connection: its writes' futures and its COMMIT.

    ``attach`` hands it the connection at open, ``detach`` takes it back at close.
    ``before_first_write`` runs once, before the first write ever starts a batch;
    ``on_rollback`` whenever a batch is rolled back (what the store keeps in memory about
    its writes is stale); ``after_commit`` after each COMMIT has completed its futures.
    """

    def __init__(self, path: Path, *, interval_s: float, checkpointer: Checkpointer,
                 before_first_write: Callable[[sqlite3.Connection], None],
                 on_rollback: Callable[[], None],
                 after_commit: Callable[[], None] | None) -> None:
        self.path = path
        self._interval_s = interval_s
        self._checkpointer = checkpointer
        self._before_first_write: Callable[[sqlite3.Connection], None] | None = (
            before_first_write)
        self._on_rollback = on_rollback
        self._after_commit = after_commit
        self._conn: sqlite3.Connection | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # The open batch: its futures in write order, and the scheduled COMMIT.
        self._pending: list[Commit] = []
        self._commit_handle: asyncio.Handle | None = None
        self._last_batch_size = 0  # writes in the previous COMMIT: busy or idle
        # Why the last COMMIT failed, until one succeeds (the server's /readyz).
        self.write_error: str | None = None

    def attach(self, conn: sqlite3.Connection, loop: asyncio.AbstractEventLoop) -> None:
        self._conn, self._loop = conn, loop

    def detach(self) -> None:
        self._conn = None

    def write(self, sql: str, params: tuple[Any, ...], *,
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
                if self._before_first_write is not None:
                    hook, self._before_first_write = self._before_first_write, None
                    hook(conn)
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

    def failed(self, error: StoreError) -> Commit:
        """A Commit that has already failed with ``error`` (a write refused before SQL)."""
        loop = self._loop or asyncio.get_running_loop()
        future: Commit = loop.create_future()
        future.set_exception(error)
        return future

    def commit_now(self) -> None:
        """COMMIT the open batch without waiting for its window (raises what failed)."""
        if self._commit_handle is None:
            return
        self._commit_handle.cancel()
        error = self._commit_batch()
        if error is not None:
            raise error

    def alone(self, work: Callable[[sqlite3.Connection], Any]) -> Any:
        """``work(conn)`` in a transaction of its own, now, on the event loop: the open
        batch is committed first (raises what failed), then ``work`` runs its own
        BEGIN ... COMMIT (for a rare operator's change, ``cfm admin remove-user`` on a
        running server, whose reads and writes are one transaction)."""
        conn = self._conn
        if conn is None:
            raise StoreError("the store is not open")
        self.commit_now()
        if self._before_first_write is not None:
            hook, self._before_first_write = self._before_first_write, None
            hook(conn)
        result = work(conn)
        self._checkpointer.after_commit(conn)
        return result

    def _schedule_commit(self, loop: asyncio.AbstractEventLoop) -> asyncio.Handle:
        if self._interval_s:
            return loop.call_later(self._interval_s, self._commit_batch)
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
        self._on_rollback()
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
