"""Search on a cluster node: the node's own FTS5 index, kept by a process of its own
(``cluster/indexer.py``) that reads the room streams from Redis, its hits checked
against Redis by the node (docs/cluster.md, "Search on a cluster").

Which rooms: those the node follows. A node subscribes to every room of each user
signed in on it before that user's hello is answered, and a user can only search rooms
they are a member of, so the rooms a node can be asked about are always rooms it
follows. Each one is indexed from the moment it is first followed (its stream read from
the start: the catch-up), then kept current as its messages are delivered to the node
(``note``). A room this node never follows costs it nothing; one it stops following
keeps its entries, and is caught up from its watermark when followed again.

How: the delivery only notes ``room -> seq`` (a dict assignment on the message path);
every ``FLUSH_INTERVAL_S`` the notes go down a pipe to the indexer, which reads the
rooms' new entries from Redis itself and writes them to the index file (how, and the
rules for edits, deletes and hidden messages: ``indexer.py``). Nothing comes back on
the pipe: how far the index is comes from the file's per-room watermarks, read when a
search asks.

A search reads the index (the rooms passed in, the reader's hidden rule in SQL), then
reads each hit's entry from Redis again (one ``read.lua`` of one entry per hit, pipelined
by the batcher): a hit is kept only if it is still there (not deleted, not trimmed by
retention), still holds every word (an edit the index has not passed yet) and the reader
may see it. The rules of which rooms stay in ``domain/search.py``.

The file (``search-<node id>.sqlite3`` in the data dir) is kept across the node's
restarts: a restart costs no catch-up of what was indexed before, only of what was
stored since, and no re-read of every followed room's stream from Redis. What may have
changed while the node was stopped (a room's history restarted, edits and deletes,
retention, a file of another cluster) and how each is seen to: ``indexfile.py``. The
node's part: the file is kept or made again at the start (``indexfile.prepare``), and
each room's recorded epoch is compared with Redis's whenever the node follows the room
(``follow``): a room restarted while it was not followed is forgotten, never counted
as indexed from the old history's watermark.

An indexer that dies while the node runs (the OOM killer, a SIGKILL, a crash) is
started again after a back-off (``childwatch.ChildKeeper``), on the same file: it
keeps the watermarks the dead one committed. What the dead one had been told and not
yet indexed went with it, so the new one is told again, first thing, every room the
node has noted with its newest seq (``_heads``), and the forgets the file does not show
yet: it reads from each room's watermark on, and nothing written while it was down is
missed. One that stops on a damaged file (a bad page deep inside, which the start's
checks do not read) has it moved aside and made again (``IndexerClient._remake`` in
``store/searchfile.py``): the next one is told every room noted and reads each from
seq 1.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import sqlite3
import subprocess
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from cfm_common.frames import StoredMsg
from cfm_server.childproc import child_command
from cfm_server.childwatch import OUTPUT, ChildKeeper
from cfm_server.cluster import keys
from cfm_server.cluster.errors import ClusterError
from cfm_server.cluster.indexer import READ_PAGE
from cfm_server.cluster.indexfile import index_file, prepare
from cfm_server.store import StoreError
from cfm_server.store.searchfile import IndexerClient, write_notes
from cfm_server.store.searchwaiters import CatchUpWaiters
from cfm_server.store.searchwords import (
    MAX_POSITION,
    fts5_query,
    parse_position,
    words_of,
)

if TYPE_CHECKING:
    from cfm_server.cluster.broker import Broker

log = logging.getLogger(__name__)

__all__ = ["READ_PAGE", "ClusterSearch", "index_file"]

FLUSH_INTERVAL_S = 0.02  # notes are written to the indexer at most this often

_MARKS = "SELECT room, seq, reset FROM rooms WHERE room IN (SELECT value FROM json_each(?))"
_RESETS = "SELECT room, reset FROM rooms"
_ROOM = "SELECT seq, reset, epoch FROM rooms WHERE room = ?"

# FTS5 the outer loop, key descending, so the LIMIT stops the walk (as single-node).
_SEARCH = (
    "SELECT f.rowid, d.room, d.seq FROM docs_fts f"
    " CROSS JOIN docs d ON d.key = f.rowid"
    " WHERE docs_fts MATCH ? AND f.rowid < ?"
    " AND d.room IN (SELECT value FROM json_each(?))"
    " AND (d.hidden = 0 OR d.sender = ?)"
    " ORDER BY f.rowid DESC LIMIT ?"
)


class ClusterSearch(IndexerClient):
    """One node's index. ``note``/``forget`` from the node (a room followed, a message
    delivered, a room restarted); ``search``/``behind``/``when_indexed`` from the node's
    store (``NodeStore``)."""

    def __init__(self, broker: Broker, url: str, path: Path) -> None:
        self.broker = broker
        self.url = url
        self.path = path
        self._cluster: str | None = ""  # this Redis's id, which the file records
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reader: sqlite3.Connection | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._pipe = -1
        self._noted: dict[str, int] = {}  # not yet written to the indexer
        # Every room noted since the start (or its last forget), with its newest seq
        # written to an indexer: what a new indexer is told after a death.
        self._heads: dict[str, int] = {}
        self._forgot: set[str] = set()
        # room -> the number of its last forget (counted over all rooms): a watermark
        # the indexer wrote before it had that forget is of the old history.
        self._resets: dict[str, int] = {}
        self._forgets = 0
        self._backlog = b""  # written in part: the pipe was full
        self._flush_handle: asyncio.Handle | None = None
        self._waiters = CatchUpWaiters(self.behind)
        self._keeper = ChildKeeper("the search indexer", self._spawn, self._died, log)

    async def open(self) -> ClusterSearch | None:
        """``start`` on the file kept from the node's last run if it is this cluster's;
        None (logged, closed) if the index cannot be made or the indexer started: the
        node runs without search."""
        cluster: str | None = secrets.token_hex(8)
        try:  # this Redis's id: the one there, or this one if none is (Redis >= 7.0)
            old = await self.broker.batcher.call("SET", keys.CLUSTER_ID, cluster, "NX", "GET")
        except ClusterError as exc:
            log.warning("cannot read the cluster's id (%s)", exc)
            cluster = None
        else:
            cluster = old.decode() if old else cluster
        try:
            self.start(cluster)
        except (OSError, sqlite3.Error) as exc:
            log.error("cannot start the search index %s (%s): searches on this node are "
                      "refused", self.path, exc)
            await self.close()
            return None
        return self

    def start(self, cluster: str | None = "") -> None:
        """Keep the file (or make it again: ``indexfile.prepare``), open the node's
        reader on it, start the indexer. OSError or sqlite3.Error when it cannot be:
        the node runs without search."""
        self._loop = asyncio.get_running_loop()
        self._cluster = cluster
        self._make_file()
        reader = self._open_reader()
        try:
            self._reader = reader
            self._keeper.start()
        except OSError:
            self._reader = None
            reader.close()
            raise

    def _make_file(self) -> None:
        # Forgets are counted on from the file's highest: a mark written in an earlier
        # run under a count this run reaches again would pass for the new history's.
        # (A file made again while the node runs, after a damaged one, holds none: the
        # node's own count goes on, and its forgets are told to the next indexer.)
        self._forgets = max(self._forgets, prepare(self.path, self._cluster))

    def _open_reader(self) -> sqlite3.Connection:
        reader = sqlite3.connect(self.path, isolation_level=None)
        reader.execute("PRAGMA query_only = 1")
        return reader

    def _spawn(self) -> subprocess.Popen[bytes]:
        """An indexer process on the file, told the URL first, then (after a death)
        what to catch up."""
        # From the loop's thread, which lives as long as the node: the indexer asks
        # the kernel to kill it when the thread that started it ends (die_with).
        process = subprocess.Popen(child_command("cfm_server.cluster.indexer",
                                                 str(self.path), str(os.getpid())),
                                   stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                   stderr=OUTPUT, close_fds=True)
        assert process.stdin is not None
        self._process = process
        self._pipe = process.stdin.fileno()
        os.set_blocking(self._pipe, False)
        # First: the URL (never on argv).
        self._backlog = self.url.encode() + b"\n" + self._catch_up().encode()
        self._flush()
        return process

    def _catch_up(self) -> str:
        """The lines a new indexer needs to go on where the dead one stopped: the
        forgets it may not have written (the file's ``reset`` of the room is older than
        the node's), then every room noted with its newest seq. Empty at the start."""
        if not self._heads and not self._noted and not self._forgot:
            return ""
        self._merge_heads(self._noted)
        self._noted = {}
        forgot, self._forgot = self._forgot, set()
        if self._resets and self._reader is not None:
            try:
                written = dict(self._reader.execute(_RESETS).fetchall())
            except sqlite3.Error:
                written = {}  # forget them all again: each is indexed from seq 1 then
            forgot |= {room for room, n in self._resets.items() if written.get(room, 0) < n}
        lines = [f"f\t{self._resets[room]}\t{room}\n" for room in forgot]
        lines += [f"n\t{seq}\t{room}\n" for room, seq in self._heads.items()]
        return "".join(lines)

    def _merge_heads(self, noted: Mapping[str, int]) -> None:
        heads = self._heads
        for room, seq in noted.items():
            if seq > heads.get(room, 0):
                heads[room] = seq

    # --- from the node (message path: a dict assignment) ---------------------------------

    def note(self, room: str, seq: int) -> None:
        """``room`` holds entries up to ``seq`` (a delivery, or a subscription's head)."""
        if seq > self._noted.get(room, 0):
            self._noted[room] = seq
            if self._flush_handle is None and self._loop is not None and self._pipe >= 0:
                self._flush_handle = self._loop.call_later(FLUSH_INTERVAL_S, self._flush)

    def follow(self, room: str, seq: int, epoch: str | None) -> None:
        """The node follows ``room`` from now on (a subscription: its head ``seq`` and
        ``epoch`` in Redis): ``note``, after forgetting the room if the file's mark of
        it belongs to another epoch (the room restarted while the node was stopped, or
        did not follow it: no live delivery told it)."""
        reader = self._reader
        if reader is not None:
            try:
                row = reader.execute(_ROOM, (room,)).fetchone()
            except sqlite3.Error as e:
                self._read_failed(e)
                row = None
            # A row of a forget this run made and the indexer has not written yet is
            # not counted as a mark (``behind``) anyway.
            if (row is not None and row[0] > 0 and row[1] >= self._resets.get(room, 0)
                    and row[2] != (epoch or "")):
                # Debug: the node logs such a room's new epoch itself (``_subscribed``).
                log.debug("%s: epoch %s in Redis, %s in the search index: indexing it "
                          "again", room, epoch, row[2] or "unknown")
                self.forget(room)
        self.note(room, seq)

    def forget(self, room: str) -> None:
        """``room``'s history restarted in Redis (a new epoch: its seqs start again): the
        indexer drops what it indexed of it; the next note indexes it from the start."""
        self._noted.pop(room, None)
        self._heads.pop(room, None)
        self._forgot.add(room)
        self._forgets += 1
        self._resets[room] = self._forgets
        self._flush()

    def _flush(self) -> None:
        """Write the notes to the indexer; while the pipe is full they wait here,
        coalesced (one per room), rather than pile up."""
        self._flush_handle = None
        if self._pipe < 0:
            return
        data = self._backlog
        if not data:
            forgot, self._forgot = self._forgot, set()
            noted, self._noted = self._noted, {}
            # The forgets before the new histories' notes.
            lines = [f"f\t{self._resets[room]}\t{room}\n" for room in forgot]
            lines += [f"n\t{seq}\t{room}\n" for room, seq in noted.items()]
            data = "".join(lines).encode()
            self._merge_heads(noted)
        written = write_notes(self._pipe, data)
        if written is None:  # the indexer is gone: the keeper starts another
            self._pipe = -1
            self._backlog = b""
            self._keeper.check()
            return
        self._backlog = data[written:]
        if (self._backlog or self._noted or self._forgot) and self._loop is not None:
            self._flush_handle = self._loop.call_later(FLUSH_INTERVAL_S, self._flush)

    # --- how far behind ----------------------------------------------------------------

    @property
    def indexed(self) -> int:
        """Entries the indexer has read since the start (figures, tests)."""
        if self._reader is None:
            return 0
        return int(self._reader.execute("SELECT entries FROM stats").fetchone()[0])

    def behind(self, rooms: Mapping[str, int]) -> int:
        """How many entries up to each room's given seq the index has not read yet."""
        wanted = {room: seq for room, seq in rooms.items() if seq > 0}
        if not wanted:
            return 0
        if self._reader is None:
            return sum(wanted.values())
        try:
            rows = self._reader.execute(_MARKS, (json.dumps(list(wanted)),)).fetchall()
        except sqlite3.Error as e:
            self._read_failed(e)
            return sum(wanted.values())
        resets = self._resets
        marks = {room: seq for room, seq, reset in rows if reset >= resets.get(room, 0)}
        return sum(max(0, seq - marks.get(room, 0)) for room, seq in wanted.items())

    def when_indexed(self, rooms: Mapping[str, int], callback: Callable[[], None],
                     timeout_s: float) -> None:
        """``callback()`` once ``behind(rooms)`` is 0, or after ``timeout_s``; once."""
        loop, process = self._loop, self._process
        if loop is None or process is None or process.poll() is not None \
                or not self.behind(rooms):
            callback()
            return
        for room, seq in rooms.items():
            self.note(room, seq)
        self._flush()  # a search waits: no need to wait for the flush interval
        self._waiters.add(rooms, callback, timeout_s)


    # --- searches ------------------------------------------------------------------------

    async def search(self, reader: str, rooms: Collection[str], words: Sequence[str],
                     before: str | None, limit: int) -> list[tuple[str, StoredMsg]]:
        """As ``Store.search``: the index's hits, each read again from Redis. StoreError
        when the index is not open (a damaged file that could not be made again): a
        user is answered ``internal``, never "no results", as on a single node."""
        top = MAX_POSITION if before is None else parse_position(before)
        if limit <= 0 or not words or not rooms:
            return []
        params_rooms = json.dumps(list(rooms))
        query = fts5_query(list(words))
        wanted = set(words)
        found: list[tuple[str, StoredMsg]] = []
        while len(found) < limit:
            want = limit - len(found)
            index = self._reader
            if index is None:  # its file could not be made again: no answer is right
                raise StoreError(f"{self.path}: the search index is not open")
            try:
                rows = index.execute(_SEARCH, (query, top, params_rooms, reader,
                                                   want)).fetchall()
            except sqlite3.Error as e:
                if isinstance(e, sqlite3.OperationalError) and str(e).startswith("fts5:"):
                    return []  # a word FTS5 splits where ours does not (as single-node)
                self._read_failed(e)
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
