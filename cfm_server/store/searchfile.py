"""What both search indexer processes share — the single node's (``searchindexer.py``)
and a cluster node's (``cluster/indexer.py``): a transaction on the index file, the
lines of notes their server writes them down a pipe (and how it writes them), and what
is done with a damaged file.

A damaged file: an index file whose header and tables read fine may still hold a bad
page deep inside (an FTS5 segment, a b-tree leaf; a full ``integrity_check`` at each
start would read the whole file). SQLite answers ``SQLITE_CORRUPT`` whenever a
statement meets it, and an indexer retrying its pass (or its start) would meet it
forever while every search failed. So an indexer that meets it stops with
``CORRUPT_EXIT`` (``stopped``), and its server (``IndexerClient._died``) moves the file
aside to ``<file>.corrupt`` and makes a new one, which the next indexer fills from the
history (the database, or the room streams in Redis): search comes back by itself. A
page only searches read (an old FTS5 segment) is met by the server's reader first: it
tells the indexer (a ``d`` line), which checks the file (``check_index``) and stops the
same way if it is damaged.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cfm_server.childwatch import Mended

if TYPE_CHECKING:
    import asyncio

    from cfm_server.childwatch import ChildKeeper
    from cfm_server.store.searchwaiters import CatchUpWaiters

log = logging.getLogger(__name__)

# An indexer's exit status for "the index file is damaged": its server makes it again.
CORRUPT_EXIT = 3
_CORRUPT_CODES = (11, 26)  # SQLITE_CORRUPT, SQLITE_NOTADB (primary codes)
ASIDE = ".corrupt"  # a damaged file's name suffix once moved aside


def is_corrupt(error: BaseException) -> bool:
    """Whether SQLite said the file is damaged (not busy, full, read-only…: those pass)."""
    code = getattr(error, "sqlite_errorcode", None)
    return isinstance(error, sqlite3.DatabaseError) and code is not None \
        and code & 0xFF in _CORRUPT_CODES


class Damaged(Exception):
    """The index file is damaged: a check of it found so (``check_index``)."""


def check_index(conn: sqlite3.Connection, index: str, logger: logging.Logger) -> None:
    """Raise ``Damaged`` if the index file (``conn``'s ``main``) is: its b-trees
    (``quick_check``) and the FTS5 index's own structure (its ``integrity-check``). Reads
    the whole file: only when a search met a damaged page."""
    try:
        problem = conn.execute("PRAGMA main.quick_check(1)").fetchone()[0]
        if problem != "ok":
            raise Damaged(problem)
        conn.execute("INSERT INTO docs_fts (docs_fts) VALUES ('integrity-check')")
    except sqlite3.Error as e:
        if is_corrupt(e):
            raise Damaged(str(e)) from e
        raise
    logger.info("search index %s checks whole (a search's read of it failed)", index)


def stopped(index: str, error: sqlite3.Error | Damaged, logger: logging.Logger) -> int:
    """An indexer process's exit status after ``error`` ended its work on ``index``
    (logged here): ``CORRUPT_EXIT`` if the file is damaged (its server logs what it
    does about it), else 1 (its server starts another, which carries on from the file)."""
    if isinstance(error, Damaged) or is_corrupt(error):
        logger.info("search index %s is damaged (%s): stopping", index, error)
        return CORRUPT_EXIT
    logger.error("search index %s stopped: %s; searches answer from what it holds until "
                 "another indexer is started", index, error)
    return 1


def run(work: Callable[[], None], index: str, logger: logging.Logger) -> int:
    """An indexer process's ``work`` on ``index``, at the lowest CPU priority (its
    server's sessions come first), and its exit status: 0 once its input ended (its
    server stopped), else ``stopped``'s."""
    with contextlib.suppress(OSError):
        os.nice(19)
    try:
        work()
    except KeyboardInterrupt:
        return 0
    except (sqlite3.Error, Damaged) as e:
        return stopped(index, e, logger)
    return 0


def set_aside(path: Path) -> Path:
    """Move a damaged index file (with its WAL) to ``<path>.corrupt`` (an older one there
    is replaced), for whoever wants to look; its shared memory goes. The new name."""
    aside = path.with_name(path.name + ASIDE)
    for suffix in ("", "-wal"):
        with contextlib.suppress(FileNotFoundError):
            path.with_name(path.name + suffix).replace(aside.with_name(aside.name + suffix))
    for suffix in ("-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            path.with_name(path.name + suffix).unlink()
    return aside


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection, begin: str = "BEGIN IMMEDIATE") -> Iterator[None]:
    """``begin`` … COMMIT, or a rollback if the block raises (whatever it raises)."""
    conn.execute(begin)
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            conn.rollback()
        raise


def note_lines(data: bytes) -> Iterator[tuple[str, int | None, str]]:
    """``(kind, seq, room)`` of each whole line ``<kind>\\t<seq>\\t<room>`` of ``data``, in
    order; a line without a well-formed seq and room gives ``(kind, None, "")``."""
    for line in data.decode("utf-8", "replace").splitlines():
        kind, _, rest = line.partition("\t")
        seq, _, room = rest.partition("\t")
        if room and seq.isdigit():
            yield kind, int(seq), room
        else:
            yield kind, None, ""


def write_notes(pipe: int, data: bytes) -> int | None:
    """Write what the indexer's pipe takes now (non-blocking): the bytes written, 0 while
    it is full; None if the indexer is gone (not logged here: its server's
    ``childwatch.ChildKeeper`` logs the death, once, and starts another)."""
    try:
        return os.write(pipe, data) if data else 0
    except BlockingIOError:
        return 0
    except OSError as e:
        log.debug("the search indexer's pipe: %s", e)
        return None


def serve_notes(stdin: int, buffered: bytes, read: Callable[[bytes], None],
                busy: Callable[[], bool], run_pass: Callable[[], None],
                interval_s: Callable[[], float]) -> None:
    """An indexer process's loop: the notes read as they come (``read`` is given whole
    lines; ``buffered`` holds a line begun before), and a pass (``run_pass``, which
    handles its own failures) whenever ``busy``, at most one per ``interval_s()`` so
    that notes gather, until ``stdin`` reaches its end (the server stopped, or died)."""
    last = 0.0
    while True:
        interval = interval_s()
        wait = max(0.0, interval - (time.monotonic() - last)) if busy() else None
        readable, _, _ = select.select([stdin], [], [], wait)
        if readable:
            data = os.read(stdin, 1 << 20)
            if not data:
                return
            buffered += data
            whole, _, buffered = buffered.rpartition(b"\n")
            read(whole)
            if time.monotonic() - last < interval:
                continue  # gather: at most one pass per interval
        if not busy():
            continue
        last = time.monotonic()
        run_pass()


class IndexerClient:
    """The server's side of its search indexer process, as the single node's
    ``SearchIndex`` and a cluster node's ``ClusterSearch`` both hold it: the notes'
    pipe and its flush timer, the process's keeper, the reader of the index file, the
    searches waiting for a pass."""

    path: Path
    _flush_handle: asyncio.TimerHandle | None
    _waiters: CatchUpWaiters
    _pipe: int
    _keeper: ChildKeeper
    _process: Any
    _reader: sqlite3.Connection | None
    _backlog: bytes
    _damage_told = False  # the running indexer was told a read met a damaged page

    @property
    def keeper(self) -> ChildKeeper:
        """The indexer process's keeper (its deaths, whether it runs: metrics)."""
        return self._keeper

    def _flush(self) -> None:
        raise NotImplementedError

    def _make_file(self) -> None:
        """The index file at ``path``, kept or made (each owner's own)."""
        raise NotImplementedError

    def _open_reader(self) -> sqlite3.Connection:
        """The server's read-only connection to the index file (each owner's own)."""
        raise NotImplementedError

    def _died(self, returncode: int) -> Mended | None:
        """The indexer died: what was left to write to it (a line perhaps begun) is
        dropped; the notes made from now on wait for the next one (``_spawn``). If it
        stopped on a damaged file, the file is made again (``_remake``): what to say of
        the death instead of how it ended."""
        self._process = None
        self._pipe = -1
        self._backlog = b""
        self._damage_told = False
        return self._remake() if returncode == CORRUPT_EXIT else None

    def _read_failed(self, error: sqlite3.Error) -> None:
        """A read of the index file (a search's) failed: if SQLite said a page is
        damaged, the indexer is told to check the file (once per indexer: the check
        reads it all), and stops if it is (``_died`` then makes it again)."""
        if is_corrupt(error) and not self._damage_told and self._pipe >= 0:
            self._damage_told = True
            self._backlog += b"d\n"
            self._flush()

    def _remake(self) -> Mended:
        """Move the damaged file aside and make a new, empty one, which the next indexer
        fills from the history (its start, or the rooms told again: ``_spawn``). If that
        fails the reader stays closed: searches are refused (StoreError) meanwhile."""
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.close()
        try:
            aside = set_aside(self.path)
            self._make_file()
            self._reader = self._open_reader()
        except (OSError, sqlite3.Error) as e:
            return Mended(False, f"found its index file {self.path} damaged, and it could "
                                 f"not be made again ({e}): searches are refused until it is")
        return Mended(True, f"found its index file {self.path} damaged: moved it aside to "
                            f"{aside} and made a new one, indexed again from the history")

    async def close(self) -> None:
        """Stop the indexer and close the reader. The indexer is killed, not asked: a
        pass is one transaction of the index (cut short, it is rolled back), the next
        start picks up from the watermarks, and a process at nice 19 on a busy machine
        may take seconds to notice its pipe closing — seconds a shutdown would wait. (A
        single node closes it before the database's own connection: the last connection
        to close is the one that folds the WAL into the file.) The index file stays."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
        self._flush_handle = None
        self._waiters.clear()
        self._pipe = -1
        await self._keeper.stop()
        self._process = None
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.close()
