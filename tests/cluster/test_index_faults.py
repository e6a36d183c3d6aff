"""A cluster node's search indexer at its start (real ``cfm serve --redis`` processes
over a real redis-server): an index file damaged deep inside is moved aside and made
again from the room streams, and the indexer runs the node's own code whatever
directory the node runs in (tests/server/index_faults.py has the cases;
cfm_server/store/searchfile.py, childproc.py)."""

from __future__ import annotations

from pathlib import Path

from tests.cluster.redis_proc import RedisProcess
from tests.server.index_faults import (
    damaged_file_is_made_again,
    decoy_is_not_imported,
    plant_decoy,
)
from tests.server.serve_proc import serve


async def test_a_damaged_index_file_is_moved_aside_and_made_again(
        redis: RedisProcess, tmp_path: Path) -> None:
    data = tmp_path / "k1"
    await damaged_file_is_made_again(
        lambda: serve("--redis", redis.url, "--node-id", "k1", "--no-rate-limits",
                      "--data-dir", str(data)),
        data / "search-k1.sqlite3")


async def test_the_indexer_is_the_nodes_own_code_not_the_working_directorys(
        redis: RedisProcess, tmp_path: Path) -> None:
    mark = plant_decoy(tmp_path / "cwd")
    await decoy_is_not_imported(
        lambda: serve("--redis", redis.url, "--node-id", "k1", "--no-rate-limits",
                      "--data-dir", str(tmp_path / "k1"), cwd=str(tmp_path / "cwd"),
                      python=("-P",)),
        mark)
