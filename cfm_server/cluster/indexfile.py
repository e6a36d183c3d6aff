"""A cluster node's search index file (``search-<node id>.sqlite3``), kept across the
node's restarts, and what makes a kept one trustworthy again (docs/cluster.md, "Search
on a cluster").

The node (``search.py``) calls ``prepare`` at its start: the file is kept if it is of
this version and of this cluster, else made again with one log line saying why (an
older version's file, one from another Redis, one SQLite cannot read). A file from
another cluster is told by the id in ``cfm:cluster-id`` (made by the first node to
start, once per Redis history: a Redis that lost its data, or was emptied for ``cfm
admin migrate`` again, which copies a single node's epochs, gets a new one), which the
file records: a file recorded under another id is of other rooms' histories.

What may have happened to the rooms while the node was stopped, and who sees to it:

- *A room's history restarted* (a new epoch: Redis lost it, or its meta). Each room's
  row records the epoch its watermark belongs to. The node compares
  it with the room's epoch in Redis whenever it follows the room (``search.py``,
  ``ClusterSearch.follow``) and forgets the room if they differ, so ``behind`` never
  takes the old history's watermark; the indexer also compares every room of the file
  at its start (``check_kept``), the rooms no user of the node is in included.
- *Edits and deletes*: entries of their own above the room's watermark, read by the
  indexer's catch-up like any other (a delete takes its target's row out).
- *Retention* trimmed the oldest entries: ``check_kept`` drops the rows below each
  room's first kept entry.
- *Redis restored from an older copy* (same id, same epochs, a head below the mark: the
  seqs above it will be given to other messages): ``check_kept`` indexes the room again.
- *The room is gone* (no meta, no stream: a DM archived): its rows and watermark go.

Until the catch-up has read a room, a search's hits are read again from Redis anyway
(``ClusterSearch.search``): a message deleted or trimmed while the node was stopped is
never answered, even from rows still in the file.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from pathlib import Path
from typing import Any

from cfm_server.cluster import keys
from cfm_server.datadir import make_private_dir, make_private_file
from cfm_server.store.searchfile import transaction
from cfm_server.store.searchwords import TEXT_INDEX_SCHEMA

log = logging.getLogger(__name__)

# 2: rooms.epoch and the ``about`` table (the file is kept across starts). A file of
# version 1 (or 0: not set) was deleted at each stop; one left behind is made again.
SCHEMA_VERSION = 2
SCHEMA = f"""
CREATE TABLE docs (
    key INTEGER PRIMARY KEY,
    room TEXT NOT NULL,
    seq INTEGER NOT NULL,
    sender TEXT NOT NULL,
    hidden INTEGER NOT NULL
);
CREATE UNIQUE INDEX docs_by_message ON docs (room, seq);
{TEXT_INDEX_SCHEMA}CREATE TABLE rooms (
    room TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    reset INTEGER NOT NULL,  -- the node's count of the room's forgets this mark follows
    epoch TEXT NOT NULL  -- the room's epoch in Redis when it was read ('' unknown)
) WITHOUT ROWID;
CREATE TABLE stats (id INTEGER PRIMARY KEY CHECK (id = 1), entries INTEGER NOT NULL);
INSERT INTO stats (id, entries) VALUES (1, 0);
CREATE TABLE about (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
"""
CHECK_CHUNK = 500  # rooms checked per Redis pipeline (and per transaction) at a start


def index_file(data_dir: Path, node_id: str) -> Path:
    return data_dir / f"search-{node_id}.sqlite3"


def remove_file(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            path.with_name(path.name + suffix).unlink()


def prepare(path: Path, cluster: str | None) -> int:
    """Keep the index file at ``path`` or make it again; the highest forget count its
    rows hold (the node counts its forgets on from there). ``cluster``: this Redis's
    id (``keys.CLUSTER_ID``; '' for none: a test's index; None: it could not be read,
    and a file that cannot be told to be this cluster's is made again). OSError or
    sqlite3.Error when it cannot be made."""
    make_private_dir(path.parent)
    why = _why_not_kept(path, cluster) if path.exists() else "new"
    if why:
        if why != "new":
            log.warning("search index %s %s: making it again (its rooms are read from "
                        "Redis as they are followed)", path, why)
        remove_file(path)
        make_private_file(path)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        if why:
            conn.executescript(f"BEGIN; {SCHEMA} PRAGMA user_version = {SCHEMA_VERSION};"
                               " COMMIT;")
        with transaction(conn):
            if cluster:
                conn.execute("INSERT OR REPLACE INTO about (key, value) VALUES ('cluster', ?)",
                             (cluster,))
            # "Entries read since the node's start" (figures, tests).
            conn.execute("UPDATE stats SET entries = 0")
        return int(conn.execute("SELECT coalesce(max(reset), 0) FROM rooms").fetchone()[0])
    finally:
        conn.close()


def _why_not_kept(path: Path, cluster: str | None) -> str:
    """'' if the file at ``path`` can be kept, else why not (for the log line)."""
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as e:
        return f"cannot be opened ({e})"
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version != SCHEMA_VERSION:
            return f"is of another version ({version}, this one makes {SCHEMA_VERSION})"
        row = conn.execute("SELECT value FROM about WHERE key = 'cluster'").fetchone()
        conn.execute("SELECT count(*) FROM rooms").fetchone()
    except sqlite3.Error as e:  # not a database, a table missing, a bad page
        return f"cannot be read ({e})"
    finally:
        conn.close()
    if cluster is None:
        return "cannot be told to be this cluster's (Redis did not answer)"
    if cluster and (row is None or row[0] != cluster):
        return f"was made on another cluster (its id {row[0]}, this Redis's {cluster})"
    return ""


def _first_seq(entries: list[Any]) -> int | None:
    if not entries:
        return None
    entry_id = entries[0][0]
    return int(entry_id.split(b"-", 1)[0])


def check_kept(conn: sqlite3.Connection, redis: Any, marks: dict[str, int],
               epochs: dict[str, str]) -> tuple[list[str], list[str]]:
    """Compare each room of ``marks`` (rooms of a kept file with their watermarks,
    recorded under ``epochs``) with Redis: a room whose epoch changed, or whose head is
    below its mark (Redis restored from an older copy: the seqs above will be given
    again, to other messages), has its rows dropped and its mark set to 0 (indexed from
    seq 1 when noted), a room gone from Redis its rows and its mark, and the rows of the
    others below their first kept entry (retention) go. Returns (rooms indexed again,
    rooms gone). Raises what Redis or SQLite raise: nothing is changed for the chunk
    that failed."""
    again: list[str] = []
    gone: list[str] = []
    rooms = list(marks)
    for start in range(0, len(rooms), CHECK_CHUNK):
        chunk = rooms[start:start + CHECK_CHUNK]
        pipe = redis.pipeline(transaction=False)
        for room in chunk:
            pipe.hmget(keys.room_meta(room), "seq", "epoch")
            pipe.xrange(keys.room_log(room), "-", "+", count=1)
        replies = pipe.execute()
        with transaction(conn, "BEGIN"):
            for i, room in enumerate(chunk):
                (head, epoch), first = replies[2 * i], _first_seq(replies[2 * i + 1])
                if head is None and epoch is None and first is None:
                    conn.execute("DELETE FROM docs WHERE room = ?", (room,))
                    conn.execute("DELETE FROM rooms WHERE room = ?", (room,))
                    gone.append(room)
                elif ((epoch or b"").decode() != epochs.get(room, "")
                      or int(head or 0) < marks[room]):
                    conn.execute("DELETE FROM docs WHERE room = ?", (room,))
                    conn.execute("UPDATE rooms SET seq = 0, epoch = '' WHERE room = ?", (room,))
                    again.append(room)
                else:
                    # Below the first entry the stream holds, nothing is left to find
                    # (trimmed, or deleted and so never indexed); an empty stream holds
                    # nothing up to its head.
                    floor = first if first is not None else int(head or 0) + 1
                    conn.execute("DELETE FROM docs WHERE room = ? AND seq < ?", (room, floor))
    return again, gone
