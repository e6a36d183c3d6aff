"""What both search indexer processes share — the single node's (``searchindexer.py``)
and a cluster node's (``cluster/indexer.py``): a transaction on the index file, and the
lines of notes their server writes them down a pipe (and how it writes them)."""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
from collections.abc import Iterator

log = logging.getLogger(__name__)


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
    it is full; None if the indexer is gone (logged: its index stays as it is)."""
    try:
        return os.write(pipe, data) if data else 0
    except BlockingIOError:
        return 0
    except OSError as e:
        log.error("the search indexer stopped (%s); the index stays as it is until the "
                  "server's next start", e)
        return None
