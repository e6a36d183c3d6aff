"""Fixtures of the fault suite: a killable ``cfm serve`` subprocess and SDK clients.

``server_proc``  ``await server_proc(*flags)`` → a started :class:`ServerProcess` on a
                 data dir in tmp_path; stopped (SIGTERM, then SIGKILL) at teardown.
``sdk``          ``sdk(url, name, **kwargs)`` → an unconnected ``Client`` with a quick,
                 seeded back-off and no token file; closed at teardown.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from cfm_common._backoff import Backoff
from cfm_common.client import Client
from tests.faults.procs import ServerProcess


@pytest.fixture
async def server_proc(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[ServerProcess]]]:
    started: list[ServerProcess] = []

    async def start(*flags: str, data_dir: Path | None = None) -> ServerProcess:
        proc = ServerProcess(data_dir or tmp_path / f"data{len(started)}", *flags)
        started.append(proc)
        await proc.start()
        return proc

    yield start
    for proc in started:
        await proc.stop()


def quick_backoff(seed: int) -> Backoff:
    """Reconnect within tens of milliseconds: the tests restart servers at once."""
    return Backoff(base=0.05, cap=0.4, rng=random.Random(seed))


@pytest.fixture
async def sdk() -> AsyncIterator[Callable[..., Client]]:
    made: list[Client] = []

    def make(url: str, name: str, **kwargs: Any) -> Client:
        kwargs.setdefault("token_file", False)
        kwargs.setdefault("backoff", quick_backoff(len(made)))
        client = Client(url, name, **kwargs)
        made.append(client)
        return client

    yield make
    for client in made:
        await client.close()
