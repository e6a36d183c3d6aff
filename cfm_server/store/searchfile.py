"""What both search indexer processes share — the single node's (``searchindexer.py``)
and a cluster node's (``cluster/indexer.py``): a transaction on the index file, and the
lines of notes their server writes them down a pipe."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator


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
