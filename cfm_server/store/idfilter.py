"""Which (sender, client id) pairs the SQLite store may hold, answered from memory.

Every ``say`` asks the store for its (sender, id) before storing it (a retry must get its
original ack, also after a restart), and almost every answer is "no": a bitmap gives that
answer without a query (docs/performance.md, "Dedupe without a query per say").
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from pathlib import Path

from cfm_server.store.base import StoreError


class ClientIdFilter:
    """Which (sender, client id) pairs may be stored: "certainly not" saves a query.

    A bitmap indexed by the pair's hash; a set bit (the pair, or a hash collision) falls
    back to the query, so a false positive costs a query and nothing else. Built at open
    from the stored ids, and rebuilt from the table, bigger, when it gets a sixteenth
    full, so false positives stay under ~6 %.
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


def read_client_id_filter(conn: sqlite3.Connection, path: Path) -> ClientIdFilter:
    """A filter of every client id in the ``messages`` table (at open, and to grow it)."""
    try:
        count = conn.execute("SELECT count(client_id) FROM messages").fetchall()[0][0]
        pairs = conn.execute(
            "SELECT sender, client_id FROM messages WHERE client_id IS NOT NULL")
        return ClientIdFilter(pairs, count)
    except sqlite3.Error as e:
        raise StoreError(f"{path}: read failed: {e}") from e
