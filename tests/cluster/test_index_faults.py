"""A cluster node's search indexer at its start (real ``cfm serve --redis`` processes
over a real redis-server): an index file damaged deep inside is moved aside and made
again from the room streams, and the indexer runs the node's own code whatever
directory the node runs in (tests/server/index_faults.py has the cases;
cfm_server/store/searchfile.py, childproc.py)."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest

from tests.cluster.redis_proc import RedisProcess
from tests.cluster.test_search import old_history
from tests.server.index_faults import (
    damage_deep_inside,
    damaged_file_is_made_again,
    decoy_is_not_imported,
    plant_decoy,
)
from tests.server.serve_proc import serve
from tests.wire import eventually


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


async def test_a_damaged_page_a_search_meets_first_has_the_file_made_again(
        broker_factory, redis: RedisProcess, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    """Below the node: a damaged page that the indexer does not read (here it cannot
    even reach Redis, so it never touches the file) is met by a search on the node's
    reader; the node tells the indexer, which checks the file, finds it damaged and
    stops, and the node moves the file aside and makes a new one."""
    from cfm_server.cluster.search import ClusterSearch

    caplog.set_level(logging.INFO, logger="cfm_server.cluster.search")
    writer = await broker_factory()
    await old_history(writer, "#w")
    path = tmp_path / "search.sqlite3"
    index = ClusterSearch(await broker_factory(), redis.url, path)
    index.start()
    try:
        index.note("#w", 5)
        await eventually(lambda: index.behind({"#w": 5}) == 0, timeout=30)
    finally:
        await index.close()
    damage_deep_inside(path)
    aside = path.with_name(path.name + ".corrupt")
    index = ClusterSearch(await broker_factory(), "redis://127.0.0.1:9/0", path)
    index.start()
    index._keeper.first_delay_s = 0.05
    try:
        with pytest.raises(sqlite3.DatabaseError):
            await index.search("bob", ["#w"], ["needle"], None, 50)
        await eventually(lambda: index._keeper.restarts == 1, timeout=30)
        assert aside.exists()
        assert await index.search("bob", ["#w"], ["needle"], None, 50) == []
        assert index.behind({"#w": 5}) == 5  # indexed again from seq 1 once Redis answers
    finally:
        await index.close()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and f"found its index file {path} damaged: moved it aside " \
        f"to {aside} and made a new one" in warnings[0], warnings
