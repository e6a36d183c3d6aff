"""A single node's search indexer at its start: an index file damaged deep inside is
moved aside and made again from the database, and the indexer runs the server's own
code whatever directory the server runs in (tests/server/index_faults.py has the
cases; cfm_server/store/searchfile.py, childproc.py)."""

from __future__ import annotations

from pathlib import Path

from tests.server.index_faults import (
    damaged_file_is_made_again,
    decoy_is_not_imported,
    plant_decoy,
)
from tests.server.serve_proc import serve


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
