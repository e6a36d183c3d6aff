"""A reconnect storm: 500 clients come back at once after a restart, and all resume."""

from __future__ import annotations

import asyncio
import resource
from typing import Any

import pytest

from cfm_common.client import Client, ConnectionState
from cfm_common.frames import Msg
from tests.faults.procs import ServerProcess
from tests.sdk.conftest import Recorder

CLIENTS = 500
BATCH = 50


@pytest.fixture
def many_files() -> None:
    """Room for 500 sockets on each side, plus everything else the test process holds."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 4 * CLIENTS
    if soft < want:
        if hard != resource.RLIM_INFINITY and hard < want:
            pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {want}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def connects(recorder: Recorder) -> int:
    return sum(1 for s in recorder.states() if s.state is ConnectionState.CONNECTED)


def dm_texts(recorder: Recorder) -> list[tuple[int, str]]:
    return [(e.seq, e.text) for e in recorder.events if isinstance(e, Msg)]


async def send_to_all(sender: Client, names: list[str], tag: str) -> None:
    for start in range(0, len(names), BATCH):
        await asyncio.gather(*(sender.say(f"{tag} {name}", to=name, id=f"{tag}-{name}")
                               for name in names[start:start + BATCH]))


async def test_500_clients_reconnect_at_once_after_a_restart_and_all_resume(
    many_files: None, server_proc: Any, sdk: Any
) -> None:
    server: ServerProcess = await server_proc("--no-rate-limits")
    names = [f"user{i:03d}" for i in range(CLIENTS)]
    clients = [sdk(server.url, name) for name in names]
    sender = sdk(server.url, "sender")
    await sender.connect()
    for start in range(0, CLIENTS, BATCH):
        await asyncio.gather(*(c.connect() for c in clients[start:start + BATCH]))
    recorders = [Recorder(c) for c in clients]
    await send_to_all(sender, names, "first")

    server.kill()
    await server.wait()
    await server.start()  # everyone's back-off is under half a second: they come at once
    # While the storm is on, the sender writes to all of them again.
    await asyncio.wait_for(send_to_all(sender, names, "second"), 60)

    async def resumed(recorder: Recorder) -> None:
        await recorder.wait(lambda r: connects(r) >= 2 and len(dm_texts(r)) >= 2, timeout=60)

    await asyncio.wait_for(asyncio.gather(*(resumed(r) for r in recorders)), 90)
    for name, recorder in zip(names, recorders, strict=True):
        assert dm_texts(recorder) == [(1, f"first {name}"), (2, f"second {name}")], name
        assert recorder.client.state is ConnectionState.CONNECTED
    print(f"\nfaults: reconnect storm of {CLIENTS} clients: all resumed, "
          f"{2 * CLIENTS} messages checked, lost=0 doubled=0")
