"""What the tests of a search indexer's start-up faults share (a single node's,
tests/server/test_index_faults.py, and a cluster node's, tests/cluster/test_index_faults.py),
over real ``cfm serve`` processes and real index files:

- ``damaged_file_is_made_again``: the node's index file damaged deep inside while the
  node is stopped (an FTS5 page overwritten; its header and tables read fine): at the
  next start the node moves it aside with one warning naming it, makes a new one from
  the history, and search comes back by itself.
- ``decoy_is_not_imported``: the node run in a directory holding a ``cfm_server``
  package of its own (a checkout of another version, say): the indexer is the node's
  own code, not that directory's.
"""

from __future__ import annotations

import contextlib
import re
import secrets
import sqlite3
from collections.abc import Callable
from pathlib import Path

from tests.server.indexer_kill import lines_about, search_until
from tests.server.serve_proc import ServeProcess
from tests.server.test_search import _join, _say
from tests.wire import WireClient, signed_in

Node = Callable[[], contextlib.AbstractAsyncContextManager[ServeProcess]]
PATTERN = 0xA5  # what a damaged page is overwritten with


def read_index(path: Path, sql: str) -> list[tuple[object, ...]]:
    """What the node's index file holds (read-only, beside the node's own readers)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def damage_deep_inside(path: Path) -> None:
    """Overwrite the root page of the FTS5 index's data (``docs_fts_data``) of the index
    file at ``path`` (its WAL folded in first): every search and every write of a text
    then meets SQLITE_CORRUPT, while the file's header, its version and its tables of
    rooms and marks read as before (what the start checks)."""
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        (root,), = conn.execute("SELECT rootpage FROM sqlite_schema"
                                " WHERE name = 'docs_fts_data'").fetchall()
        (size,), = conn.execute("PRAGMA page_size").fetchall()
    finally:
        conn.close()
    with open(path, "r+b") as file:
        file.seek((root - 1) * size)
        file.write(bytes([PATTERN]) * size)
    assert read_index(path, "PRAGMA user_version")[0][0] > 0
    assert read_index(path, "SELECT count(*) FROM rooms")[0][0] > 0
    with contextlib.suppress(sqlite3.DatabaseError):
        read_index(path, "SELECT rowid FROM docs_fts WHERE docs_fts MATCH 'needle'")
        raise AssertionError(f"{path} still searchable")


async def damaged_file_is_made_again(node: Node, index: Path) -> None:
    async with node() as server, signed_in(server.url, "alice") as alice:
        token = alice.token
        await _join(alice, "#w")
        seqs = [await _say(alice, f"needle {i}", room="#w") for i in range(10)]
        found = [("#w", seq) for seq in reversed(seqs)]
        await search_until(alice, "needle", found)
    damage_deep_inside(index)
    aside = index.with_name(index.name + ".corrupt")
    async with node() as server, signed_in(server.url, "alice", token=token) as alice:
        await server.wait_line(
            rf"WARNING .*the search indexer \(pid \d+\) found its index file "
            rf"{re.escape(str(index))} damaged: moved it aside to {re.escape(str(aside))}"
            r" and made a new one, indexed again from the history; starting a new one in",
            timeout=30)
        await search_until(alice, "needle", found)
        new = await say(alice, "needle after", "#w")
        await search_until(alice, "after", [("#w", new)])
    assert len(lines_about(server, "WARNING.*damaged")) == 1
    assert not lines_about(server, r"died \(")
    assert not lines_about(server, "Traceback")
    assert aside.exists()
    assert read_index(index, "PRAGMA integrity_check") == [("ok",)]
    assert len(read_index(index, "SELECT rowid FROM docs_fts WHERE docs_fts MATCH 'needle'")) == 11


async def say(client: WireClient, text: str, room: str) -> int:
    """``_say`` with an id of its own: a client of a later run counts its frames from 0
    again, and an id its sender used before is a retry (the original's ack)."""
    frame = {"t": "say", "room": room, "text": text, "id": secrets.token_hex(6)}
    await client.send(frame)
    return int((await client.recv_until("ack", id=frame["id"]))["seq"])


def plant_decoy(where: Path) -> Path:
    """A ``cfm_server`` package in ``where`` that, imported, leaves a mark and exits; the
    mark's path."""
    mark = where / "decoy-imported"
    package = where / "cfm_server"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(
        f"import os, pathlib\npathlib.Path({str(mark)!r}).write_text(str(os.getpid()))\n"
        "os._exit(9)\n")
    return mark


async def decoy_is_not_imported(node: Node, mark: Path) -> None:
    """``node()`` runs in the decoy's directory (itself not importing it: ``-P``)."""
    async with node() as server, signed_in(server.url, "alice") as alice:
        await _join(alice, "#w")
        seq = await _say(alice, "needle", room="#w")
        await search_until(alice, "needle", [("#w", seq)])
    assert not mark.exists(), "the indexer imported the working directory's cfm_server"
    assert not lines_about(server, "search indexer .* died")
