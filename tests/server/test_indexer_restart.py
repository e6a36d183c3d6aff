"""A single node's search indexer SIGKILLed under a real ``cfm serve``: the server logs
the death once, starts a new indexer a second later, and that one catches up from the
database — the messages stored while no indexer ran (and those whose notes went down
the dead one's pipe) are found (cfm_server/childwatch.py, store/searchindex.py)."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import psutil
import pytest

from tests.server.indexer_kill import indexer_of, kill_and_find, lines_about
from tests.server.serve_proc import serve
from tests.server.test_search import _join, _say, _search, _where
from tests.wire import eventually, signed_in

INDEX = "cfm.search.sqlite3"


async def test_a_killed_indexer_is_started_again_and_catches_up(tmp_path: Path) -> None:
    async with serve("--data-dir", str(tmp_path), "--no-rate-limits") as server:
        await kill_and_find(server, INDEX)


async def test_notes_that_died_with_the_indexer_are_caught_up_from_the_database(
        server_factory) -> None:
    """The notes the dead indexer had in its pipe, unread, went with it: the new one's
    start looks at every room of the database against the index's watermarks and
    indexes what they lack, unasked (no search needed: ``behind`` reaches 0)."""
    server = await server_factory()
    index = server.store._search
    index._keeper.first_delay_s = 0.05
    async with signed_in(server.url, "alice") as alice:
        await _join(alice, "#w")
        first = await _say(alice, "needle one", room="#w")
        await eventually(lambda: index.behind({"#w": first}) == 0, timeout=30)
        indexer = psutil.Process(index._process.pid)
        indexer.suspend()  # SIGSTOP: the notes wait in its pipe, unread
        second = await _say(alice, "needle two", room="#w")  # noted at its COMMIT
        await eventually(lambda: not index._noted and not index._backlog)  # in the pipe
        indexer.kill()
        await eventually(lambda: index._keeper.restarts == 1
                         and index.behind({"#w": second}) == 0, timeout=30)
        assert _where(await _search(alice, "needle")) == [("#w", second), ("#w", first)]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
async def test_a_stop_signal_to_the_whole_group_is_no_death(tmp_path: Path, sig: int) -> None:
    """Ctrl+C in a terminal signals the whole foreground process group, and systemd's
    stop (KillMode=control-group) the whole cgroup: the indexer gets the signal with its
    server. It ignores it and is ended by its server as that stops: no death logged,
    no new indexer started in the middle of the shutdown."""
    async with serve("--data-dir", str(tmp_path), preexec_fn=os.setsid) as server, \
            signed_in(server.url, "alice") as alice:
        await indexer_of(server, INDEX)
        os.killpg(server.proc.pid, sig)
        # A client to say goodbye to: the shutdown takes a few loop turns at least.
        assert await alice.wait_closed(timeout=30) == 1012
        assert await asyncio.wait_for(server.proc.wait(), 30) == 0
    assert not lines_about(server, "search indexer")
    assert not lines_about(server, "Traceback")
