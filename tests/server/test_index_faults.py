"""A single node's search indexer at its start: an index file damaged deep inside is
moved aside and made again from the database, and the indexer runs the server's own
code whatever directory the server runs in (tests/server/index_faults.py has the
cases; cfm_server/store/searchfile.py, childproc.py)."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

from tests.server.index_faults import (
    PATTERN,
    damaged_file_is_made_again,
    decoy_is_not_imported,
    plant_decoy,
    say,
)
from tests.server.indexer_kill import lines_about
from tests.server.serve_proc import serve
from tests.server.test_search import _join
from tests.wire import signed_in


async def test_a_damaged_index_file_is_moved_aside_and_made_again(tmp_path: Path) -> None:
    await damaged_file_is_made_again(
        lambda: serve("--data-dir", str(tmp_path), "--no-rate-limits"),
        tmp_path / "cfm.search.sqlite3")


async def test_the_indexer_is_the_servers_own_code_not_the_working_directorys(
        tmp_path: Path) -> None:
    mark = plant_decoy(tmp_path / "cwd")
    await decoy_is_not_imported(
        lambda: serve("--data-dir", str(tmp_path / "data"), "--no-rate-limits",
                      cwd=str(tmp_path / "cwd"), python=("-P",)),
        mark)


async def test_a_damaged_database_leaves_the_index_file_where_it_is(tmp_path: Path) -> None:
    """SQLite's "corrupt" to the indexer's read of the database (a page of old messages
    damaged, which the server itself does not read at its start) is the database's: the
    index is not moved aside (it would be no better made again); the indexer says which
    file is damaged, and stops."""
    async with serve("--data-dir", str(tmp_path), "--no-rate-limits") as server, \
            signed_in(server.url, "alice") as alice:
        token = alice.token
        await _join(alice, "#w")
        for i in range(200):
            await say(alice, f"needle {i} " + "padding " * 25, "#w")
    database = tmp_path / "cfm.sqlite3"
    index = tmp_path / "cfm.search.sqlite3"
    for suffix in ("", "-wal", "-shm"):  # made again at the start: every message read
        index.with_name(index.name + suffix).unlink(missing_ok=True)
    damage_a_leaf_in_the_middle(database, "messages")
    async with serve("--data-dir", str(tmp_path), "--no-rate-limits") as server, \
            signed_in(server.url, "alice", token=token):
        await server.wait_line(rf"ERROR .*search index {re.escape(str(index))} stopped: the "
                               rf"database {re.escape(str(database))} is damaged", timeout=30)
        await server.wait_line(r"the search indexer \(pid \d+\) died \(exited with status 1\)")
    assert index.exists() and not index.with_name(index.name + ".corrupt").exists()
    assert not lines_about(server, "moved it aside")


def damage_a_leaf_in_the_middle(path: Path, table: str) -> None:
    """Overwrite the middle one of ``table``'s leaf pages (in key order) in the database
    at ``path`` (its WAL folded in first)."""
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        leaves = [page for page, in conn.execute(
            "SELECT pageno FROM dbstat WHERE name = ? AND pagetype = 'leaf' ORDER BY path",
            (table,))]
        (size,), = conn.execute("PRAGMA page_size").fetchall()
    finally:
        conn.close()
    assert len(leaves) >= 3, leaves
    with open(path, "r+b") as file:
        file.seek((leaves[len(leaves) // 2] - 1) * size)
        file.write(bytes([PATTERN]) * size)
