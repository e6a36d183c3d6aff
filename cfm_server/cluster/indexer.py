"""A cluster node's search indexer: a process of its own (nice 19) that reads the room
streams from Redis over its own connection and keeps the node's index file.

``search.py`` (in the node) creates the file, starts this process (``main``: the file's
path and the node's pid on the command line, the Redis URL as the first line of its
stdin — a URL may hold a password, which a command line would show to every user of
the machine) and writes to
its stdin which rooms hold new entries: ``n<TAB>seq<TAB>room`` (the room holds entries up
to seq: a delivery, or a subscription's head) and ``f<TAB>n<TAB>room`` (the room's
history restarted under a new epoch: drop what was indexed of it; n counts the node's
forgets, so that it can tell a watermark of the new history from one of the old), and
``d`` (a search met a damaged page: check the file, ``searchfile.check_index``). It
exits when its
stdin closes (the node stopped, or died). If it dies first, the node starts another on
the same file, which goes on from the watermarks (and forget counts) found there; so
does the indexer of the node's next start (the file is kept). Each one first compares
the rooms of the file with Redis (``indexfile.check_kept``: a room restarted under a new
epoch or gone is dropped, rows below retention's cut go), and records with each room's
watermark the epoch it read before the room's entries (``rooms.epoch``).

Why a process: indexing an entry (its msgpack decoding, FTS5's tokenizing and merges)
took ~50 µs of the node's event loop, a quarter of a busy node's time under ``fanout``
(docs/performance.md); here it takes the core the loop does not use, at the lowest
priority, and the index's pages live in this process and the file, not in the node.

A pass reads each noted room's new entries with ``read.lua`` (a page of ``READ_PAGE``
per call, the calls of all the pass's rooms in one pipeline: each entry as it is now —
an edited message with its current text, a deleted one as a tombstone, a hidden one
marked) and writes them in one transaction of the file,
which also moves each room's watermark (``rooms``): the node reads those for ``behind``.
An edit entry replaces its target's text, a delete entry takes the target out (the
rule of single-node's ``searchindexer._CHANGES``); a hidden edit changed nothing and
changes nothing here. What ``read.lua`` lacks below a room's noted seq was trimmed by
retention: skipped.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import msgpack

from cfm_server import ratelog
from cfm_server.childproc import die_with
from cfm_server.cluster import keys, rediscluster
from cfm_server.cluster.entries import READ_FIELDS
from cfm_server.cluster.indexfile import check_kept
from cfm_server.cluster.scripts import HIDDEN_SUFFIX, READ
from cfm_server.store.searchfile import (
    check_index,
    is_corrupt,
    note_lines,
    run,
    serve_notes,
    transaction,
)
from cfm_server.store.searchwords import KEY_SHIFT, MAX_TS

log = logging.getLogger("cfm_server.cluster.indexer")

PASS_INTERVAL_S = 0.2  # at most one pass this often: a pass is one transaction, and
# FTS5 pays per transaction (a new segment, merges): 20 entries a pass cost twice as
# much CPU each as 200
PASS_BUDGET = 5_000  # entries read into one pass at most (a search sees the index grow)
READ_PAGE = 200  # entries per read.lua call
PIPELINE_CALLS = 500  # read.lua calls per pipeline (a pass's rooms, a page each)
RETRY_S = 1.0  # after a pass failed (Redis out of reach, the file unwritable)
SOCKET_TIMEOUT_S = 10.0

# A pass's new messages (JSON rows [ts, room, seq, sender, hidden, text]), keyed by ts: the
# correlated max() finds keys an earlier pass gave in the same millisecond, row_number()
# orders this pass's own (as single-node's ``searchindexer._INSERT_KEYS``).
_INSERT_DOCS = f"""
INSERT INTO docs (key, room, seq, sender, hidden)
SELECT (n.ts << {KEY_SHIFT})
       + coalesce((SELECT max(d.key) + 1 - (n.ts << {KEY_SHIFT}) FROM docs d
                   WHERE d.key BETWEEN (n.ts << {KEY_SHIFT})
                                   AND (n.ts << {KEY_SHIFT}) + {2**KEY_SHIFT - 1}), 0)
       + row_number() OVER (PARTITION BY n.ts ORDER BY n.room, n.seq) - 1,
       n.room, n.seq, n.sender, n.hidden
FROM (SELECT value ->> 0 AS ts, value ->> 1 AS room, value ->> 2 AS seq,
             value ->> 3 AS sender, value ->> 4 AS hidden FROM json_each(?)) n
"""
_INSERT_TEXTS = """
INSERT INTO texts (key, text)
SELECT d.key, n.value ->> 5 FROM json_each(?) n
CROSS JOIN docs d ON d.room = n.value ->> 1 AND d.seq = n.value ->> 2
"""
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


def entry_of(row: list[Any]) -> Entry:
    """One ``read.lua`` row (seq, m, o, h, edited text, edited ts, reactions) as the
    index needs it. Not the codec's checked decoding of a frame: the entry was written by
    a node's append script, and this is half the cost of indexing it."""
    fields = dict(zip(READ_FIELDS, row[1:], strict=False))
    frame: dict[str, Any] = msgpack.unpackb(fields[b"m"], raw=False)
    text = (fields.get(b"t") or b"").decode() if fields.get(b"e") else frame.get("text", "")
    hidden = fields.get(b"h") == b"1" or (fields.get(b"o") or b"").endswith(_HIDDEN)
    return Entry(int(row[0]), frame.get("from", ""), text or "", frame.get("ts", 0),
                 frame.get("kind", ""), frame.get("change"), frame.get("target"), hidden,
                 bool(frame.get("deleted")))


class Indexer:
    """The passes over one index file (``conn``), reading through a client of
    ``connect_redis()``, made at the first pass (and again after a failed one): a Redis
    Cluster client connects as it is made, and Redis may be out of reach then."""

    def __init__(self, conn: sqlite3.Connection, connect_redis: Callable[[], Any], *,
                 budget: int = PASS_BUDGET) -> None:
        self.conn = conn
        self.connect_redis = connect_redis
        self.redis: Any = None  # the client
        self.read: Any = None  # read.lua on the client
        self.budget = budget
        # What an indexer before this one wrote (one that died, or the node's previous
        # run: the file is kept), else nothing.
        rows = conn.execute("SELECT room, seq, reset, epoch FROM rooms").fetchall()
        self.marks: dict[str, int] = {room: seq for room, seq, _, _ in rows}
        self.todo: dict[str, int] = {}  # room -> newest seq known to be stored
        self.forgotten: set[str] = set()
        # room -> the node's number of its last forget
        self.resets: dict[str, int] = {room: reset for room, _, reset, _ in rows if reset}
        # room -> the epoch its mark belongs to, read from Redis before its entries
        # (never newer than what they are of: a later reset is the node's forget)
        self.epochs: dict[str, str] = {room: epoch for room, _, _, epoch in rows if epoch}
        # The rooms whose marks were written before this process: compared with Redis
        # at the first pass (``indexfile.check_kept``).
        self.unchecked: list[str] = [room for room, seq, _, _ in rows if seq > 0]

    @property
    def busy(self) -> bool:
        return bool(self.todo or self.forgotten or self.unchecked)

    def note(self, room: str, seq: int) -> None:
        if seq > max(self.todo.get(room, 0), self.marks.get(room, 0)):
            self.todo[room] = seq

    def forget(self, room: str, reset: int) -> None:
        self.resets[room] = reset
        self.marks.pop(room, None)
        self.epochs.pop(room, None)
        self.todo.pop(room, None)
        self.forgotten.add(room)

    def run_pass(self) -> None:
        """Read up to ``budget`` entries of the noted rooms, page by page, and index them
        in one transaction with the rooms' new watermarks. On an error nothing moves:
        the rooms stay noted for the next pass."""
        if self.read is None:
            self.redis = self.connect_redis()
            self.read = self.redis.register_script(READ.source)
        if self.unchecked:
            self._check()
        self._read_epochs()
        pages: list[tuple[str, int, int, list[Any]]] = []  # room, mark, count, rows
        budget = self.budget
        marks = dict(self.marks)
        while budget > 0:
            work = [(room, marks.get(room, 0), min(READ_PAGE, budget, top - marks.get(room, 0)))
                    for room, top in self.todo.items() if top > marks.get(room, 0)]
            if not work:
                break
            calls = []
            for room, mark, count in work:
                if budget <= 0:
                    break
                calls.append((room, mark, count))
                marks[room] = mark + count
                budget -= count
            for at in range(0, len(calls), PIPELINE_CALLS):
                part = calls[at:at + PIPELINE_CALLS]
                pages += [(room, mark, count, rows) for (room, mark, count), rows
                          in zip(part, self._read_pages(part), strict=True)]
        self._write(pages)
        self.marks = marks
        self.forgotten.clear()
        self.todo = {room: top for room, top in self.todo.items() if top > marks.get(room, 0)}

    def _read_pages(self, calls: list[tuple[str, int, int]]) -> list[Any]:
        """One page of each (room, mark, count), read in one pipeline: a round trip per
        room cost the indexer and Redis more than the entries it read (a busy node's
        pass reads a few entries of each of hundreds of rooms)."""
        from redis.exceptions import NoScriptError

        for attempt in range(2):
            pipe = self.redis.pipeline(transaction=False)
            for room, mark, count in calls:
                self.read(keys=[keys.room_meta(room), keys.room_log(room),
                                keys.room_changes(room)],
                          args=["after", mark, count], client=pipe)
            try:
                return list(pipe.execute())
            except NoScriptError:
                # A Redis Cluster's pipeline leaves loading to its caller (a plain
                # pipeline loads what its Redis lacks before it sends).
                if attempt:
                    raise
                self.redis.script_load(READ.source)
        raise AssertionError("unreachable")

    def _check(self) -> None:
        """The kept file's rooms against Redis (``check_kept``), once per process."""
        marks = {room: self.marks[room] for room in self.unchecked
                 if room not in self.forgotten and self.marks.get(room, 0) > 0}
        again, gone = check_kept(self.conn, self.redis, marks, self.epochs)
        for room in again:
            self.marks[room] = 0
            self.epochs.pop(room, None)
        for room in gone:
            self.marks.pop(room, None)
            self.epochs.pop(room, None)
        if again or gone:
            log.info("search index: %d rooms restarted (or rolled back) and %d gone in Redis "
                     "since their marks were written; indexing them again", len(again),
                     len(gone))
        self.unchecked = []

    def _read_epochs(self) -> None:
        """The epoch of each room to read whose epoch is not known yet (new here, or
        forgotten), read before its entries: one pipeline."""
        need = [room for room, top in self.todo.items()
                if room not in self.epochs and top > self.marks.get(room, 0)]
        if not need:
            return
        pipe = self.redis.pipeline(transaction=False)
        for room in need:
            pipe.hget(keys.room_meta(room), "epoch")
        for room, epoch in zip(need, pipe.execute(), strict=True):
            if epoch:  # none yet: read again at the next pass that reads the room
                self.epochs[room] = epoch.decode()

    def _write(self, pages: list[tuple[str, int, int, list[Any]]]) -> None:
        conn = self.conn
        with transaction(conn, "BEGIN"):
            for room in self.forgotten:
                conn.execute("DELETE FROM docs WHERE room = ?", (room,))
                # Mark 0 of the new history: the node's ``behind`` knows it from the old.
                conn.execute("INSERT OR REPLACE INTO rooms (room, seq, reset, epoch)"
                             " VALUES (?, 0, ?, '')", (room, self.resets.get(room, 0)))
            entries = 0
            marks: list[tuple[str, int, int, str]] = []
            new: list[tuple[int, str, int, str, int, str]] = []
            edits: list[tuple[str, str, int]] = []
            deletes: list[tuple[str, int]] = []
            for room, mark, count, rows in pages:
                for row in rows:
                    m = entry_of(row)
                    if m.change == "edit" and m.target is not None and not m.hidden:
                        edits.append((m.text, room, m.target))
                    elif m.change == "delete" and m.target is not None:
                        deletes.append((room, m.target))
                    elif (m.change is None and m.kind == "text" and m.text and not m.deleted
                          and isinstance(m.ts, int) and 0 <= m.ts <= MAX_TS):
                        new.append((m.ts, room, m.seq, m.sender, int(m.hidden), m.text))
                entries += len(rows)
                # read.lua read exactly (mark, mark + count]: the room's head is at least
                # the noted seq, and what it lacks there was trimmed by retention.
                marks.append((room, mark + count, self.resets.get(room, 0),
                              self.epochs.get(room, "")))
            conn.executemany("INSERT OR REPLACE INTO rooms (room, seq, reset, epoch)"
                             " VALUES (?, ?, ?, ?)", marks)
            # The pass's messages in two statements (a statement per message cost twice
            # the CPU), then the changes: an entry is read as it is now (an edited
            # message with its current text, a deleted one as a tombstone never
            # inserted), so their order within a pass does not matter.
            if new:
                batch = json.dumps(new)
                conn.execute(_INSERT_DOCS, (batch,))
                conn.execute(_INSERT_TEXTS, (batch,))
            if edits:
                conn.executemany("UPDATE texts SET text = ? WHERE key = (SELECT key FROM docs"
                                 " WHERE room = ? AND seq = ?)", edits)
            if deletes:
                conn.executemany("DELETE FROM docs WHERE room = ? AND seq = ?", deletes)
            conn.execute("UPDATE stats SET entries = entries + ? WHERE id = 1", (entries,))


def read_notes(data: bytes, indexer: Indexer, path: Path) -> None:
    """Apply the whole lines of ``data`` to ``indexer``, in order (``d``: a search met a
    damaged page of the file at ``path``; ``Damaged`` if it is)."""
    for kind, seq, room in note_lines(data):
        if seq is not None and kind == "n":
            indexer.note(room, seq)
        elif seq is not None and kind == "f":
            indexer.forget(room, seq)
        elif kind == "d":
            check_index(indexer.conn, str(path), log)


def connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    # Kept across the node's restarts: WAL's NORMAL never leaves it corrupt (a power
    # loss may lose the last passes, marks and rows together: read again), and waits
    # for the disk only at checkpoints.
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA secure_delete = 1")  # a deleted message's text is overwritten
    return conn


def redis_client(url: str) -> Any:
    """A blocking client (``Redis`` or ``RedisCluster``) of the node's Redis."""
    from redis import Redis
    from redis.cluster import RedisCluster

    seed, cluster = rediscluster.split_url(url)
    options: dict[str, Any] = dict(socket_timeout=SOCKET_TIMEOUT_S,
                                   socket_connect_timeout=2.0, decode_responses=False)
    if cluster:
        return RedisCluster.from_url(seed, **options)
    return Redis.from_url(seed, protocol=2, **options)


def serve(path: Path, stdin: int) -> None:
    """Read the URL, then notes; a pass whenever there is work, at most one per interval,
    until ``stdin`` reaches its end."""
    buffered = b""
    while b"\n" not in buffered:
        data = os.read(stdin, 1 << 16)
        if not data:
            return
        buffered += data
    url, _, buffered = buffered.partition(b"\n")
    from redis.exceptions import RedisClusterException, RedisError

    indexer = Indexer(connect(path), lambda: redis_client(url.decode()))
    whole, _, buffered = buffered.rpartition(b"\n")  # notes read with the URL
    read_notes(whole, indexer, path)

    def one_pass() -> None:
        try:
            indexer.run_pass()
        except (RedisError, RedisClusterException, sqlite3.Error, OSError) as e:
            if is_corrupt(e):
                raise  # no pass will ever get past it: the node makes the file again
            if not isinstance(e, sqlite3.Error):
                indexer.read = indexer.redis = None  # a new client at the next pass
            log.warning("search index: a pass failed (%s); trying again in %.0f s",
                        e, RETRY_S)
            time.sleep(RETRY_S)

    serve_notes(stdin, buffered, lambda whole: read_notes(whole, indexer, path),
                lambda: indexer.busy, one_pass,
                lambda: PASS_INTERVAL_S)


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: indexer INDEX_PATH NODE_PID (the Redis URL on stdin)",
              file=sys.stderr)
        return 2
    die_with(int(argv[2]))
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    # A pass retries every RETRY_S while Redis is out of reach: one line of it per 30 s
    # (the node logs the outage itself).
    ratelog.install(burst=1, interval=30.0, names=(log.name,))
    return run(lambda: serve(Path(argv[1]), sys.stdin.fileno()), argv[1], log)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
