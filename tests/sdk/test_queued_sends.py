"""Sends made while the server is down are all delivered after the reconnect, in the
order they were made, paced under the server's limits — across a SIGTERM (close 1012)
and a kill -9 of a real ``cfm serve`` process, at its default limits."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from cfm_common.client import Client, ConnectionState
from tests.faults.conftest import quick_backoff
from tests.faults.procs import ServerProcess
from tests.wire import eventually

LOBBY = "#lobby"


@pytest.fixture
async def serve(tmp_path: Path) -> AsyncIterator[ServerProcess]:
    server = ServerProcess(tmp_path / "data")
    await server.start()
    yield server
    await server.stop()


async def down(server: ServerProcess, how: str, client: Client) -> None:
    if how == "kill":
        server.kill()
    else:
        server.terminate()
    await server.wait()
    await eventually(lambda: client.state is not ConnectionState.CONNECTED, timeout=10)


@pytest.mark.parametrize("how", ["sigterm", "kill"])
async def test_100_says_queued_during_a_restart_are_stored_all_in_order(
    serve: ServerProcess, how: str
) -> None:
    alice = Client(serve.url, "alice", token_file=False, backoff=quick_backoff(1))
    try:
        await alice.connect()
        await alice.join(LOBBY)
        await down(serve, how, alice)
        says = [asyncio.create_task(alice.say(f"q{i}", room=LOBBY, id=f"q{i}"))
                for i in range(100)]
        await serve.start()
        acks = await asyncio.wait_for(asyncio.gather(*says), 60)  # none fails
        assert [a.seq for a in acks] == list(range(1, 101))  # stored in the order made
        stored = (await alice.history(LOBBY, after=0, limit=200)).msgs
        assert [m.id for m in stored] == [f"q{i}" for i in range(100)]
    finally:
        await alice.close()


async def test_two_senders_at_half_the_limit_lose_nothing_across_sigterm_and_kill(
    serve: ServerProcess,
) -> None:
    senders = [Client(serve.url, name, token_file=False, backoff=quick_backoff(i))
               for i, name in enumerate(("alice", "bob"))]
    acks: dict[str, list[Any]] = {c.name: [] for c in senders}
    try:
        for client in senders:
            await client.connect()
            await client.join(LOBBY)
        loop = asyncio.get_running_loop()

        async def send(client: Client) -> None:
            start = loop.time()
            tasks = []
            for i in range(150):
                # 10 per second, half the say limit (the sleep is the rate, not a sync)
                await asyncio.sleep(max(0.0, start + i / 10 - loop.time()))
                tasks.append(asyncio.create_task(
                    client.say(f"{client.name}{i}", room=LOBBY, id=f"{client.name}{i}")))
            acks[client.name] = await asyncio.wait_for(asyncio.gather(*tasks), 90)

        sending = [asyncio.create_task(send(c)) for c in senders]
        # Two outages of 5 s (the sleeps are how long things last, not syncs): each
        # leaves some 60 says per sender queued, more than the say burst.
        await asyncio.sleep(2)
        await down(serve, "sigterm", senders[0])  # close 1012 ...
        await asyncio.sleep(5)
        await serve.start()
        await asyncio.sleep(2)
        await down(serve, "kill", senders[0])  # ... and a kill -9
        await asyncio.sleep(5)
        await serve.start()
        await asyncio.wait_for(asyncio.gather(*sending), 120)

        stored = (await senders[0].history(LOBBY, after=0, limit=200)).msgs
        stored += (await senders[0].history(LOBBY, after=200, limit=200)).msgs
        assert [m.seq for m in stored] == list(range(1, 301))
        for client in senders:
            name = client.name
            mine = [m.id for m in stored if m.sender == name]
            assert mine == [f"{name}{i}" for i in range(150)]  # all, once each, in order
            assert [a.id for a in acks[name]] == mine
    finally:
        for client in senders:
            await client.close()
