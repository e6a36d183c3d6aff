"""What the tests of a search indexer's death share (a single node's,
tests/server/test_indexer_restart.py, and a cluster node's,
tests/cluster/test_indexer_restart.py): the indexer child of a real ``cfm serve``
process found and SIGKILLed, and a search asked until it finds what it should
(``kill_and_find``)."""

from __future__ import annotations

import asyncio
import re
import signal
from typing import Any

import psutil

from tests.server.serve_proc import ServeProcess
from tests.server.test_search import _join, _say, _where
from tests.wire import WireClient, signed_in


async def indexer_of(server: ServeProcess, index_name: str) -> psutil.Process:
    """The server's child process with ``index_name`` open: its indexer, past its
    set-up."""
    for _ in range(400):
        for child in psutil.Process(server.proc.pid).children():
            try:
                if any(f.path.endswith(index_name) for f in child.open_files()):
                    return child
            except psutil.NoSuchProcess:
                continue
        await asyncio.sleep(0.05)
    raise AssertionError(f"no child of the server has {index_name} open")


async def kill_indexer(server: ServeProcess, index_name: str) -> int:
    """SIGKILL the server's indexer; its pid."""
    indexer = await indexer_of(server, index_name)
    indexer.send_signal(signal.SIGKILL)
    return indexer.pid


async def restarted(server: ServeProcess, pid: int, index_name: str) -> int:
    """Wait for the server's lines on the death of indexer ``pid`` and on its successor;
    the successor's pid (checked to be the child with the index open now)."""
    await server.wait_line(rf"the search indexer \(pid {pid}\) died \(killed by SIGKILL\)"
                           r" after \d+ s; starting a new one in 1 s")
    match = await server.wait_line(r"the search indexer started again \(pid (\d+)\)")
    new = int(match.group(1))
    assert new != pid and (await indexer_of(server, index_name)).pid == new
    return new


def lines_about(server: ServeProcess, pattern: str) -> list[str]:
    return [line for line in server.lines if re.search(pattern, line)]


async def search_until(client: WireClient, text: str, want: list[tuple[str, int]]
                       ) -> dict[str, Any]:
    """Search until the answer holds exactly ``want`` (room, seq), newest first. Bounded:
    each answer waits up to 3 s for the index on the server's side; a restarted nice-19
    indexer on a loaded machine may need a few of them."""
    answer: dict[str, Any] = {}
    for attempt in range(40):
        rid = f"find{attempt}"
        await client.send({"t": "search", "text": text, "id": rid})
        answer = await client.recv(15)
        while answer.get("ref") != rid:
            answer = await client.recv(15)
        assert answer["t"] == "search", answer
        if _where(answer) == want and not answer.get("behind"):
            return answer
        await asyncio.sleep(0.25)
    raise AssertionError(f"never found {want}: last answer {answer}")


async def kill_and_find(server: ServeProcess, index_name: str) -> None:
    """The whole case, on a single node or a cluster node alike: the indexer SIGKILLed,
    a message said at once (its note may go down the dead indexer's pipe) and one while
    no indexer runs, both found once the new one is up, and what comes after too; one
    log line for the death and one for the new start."""
    async with signed_in(server.url, "alice") as alice, signed_in(server.url, "bob") as bob:
        await _join(alice, "#w")
        first = await _say(alice, "needle one", room="#w")
        await search_until(alice, "needle", [("#w", first)])

        pid = await kill_indexer(server, index_name)
        second = await _say(alice, "needle two", room="#w")
        await server.wait_line(rf"search indexer \(pid {pid}\) died")
        # (The new one starts a second after the death.)
        third = await _say(alice, "needle three", to="bob")
        await restarted(server, pid, index_name)

        await search_until(alice, "needle", [("dm:alice:bob", third), ("#w", second),
                                             ("#w", first)])
        await search_until(bob, "needle three", [("dm:alice:bob", third)])
        fourth = await _say(bob, "needle four", to="alice")
        await search_until(bob, "needle", [("dm:alice:bob", fourth), ("dm:alice:bob", third)])
    assert len(lines_about(server, "search indexer .* died")) == 1
    assert len(lines_about(server, "search indexer started again")) == 1
    assert not lines_about(server, "Traceback")
