"""Waiting for a server that is not up yet, "reconnect now", and the short back-off
after a restart (close 1012)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from cfm_common import _reconnect as reconnect_module
from cfm_common._backoff import Backoff
from cfm_common.client import ClientError, ConnectionState
from tests.ports import free_port
from tests.sdk.conftest import Recorder
from tests.wire import eventually

LOBBY = "#lobby"


async def test_connect_wait_keeps_trying_until_the_server_is_up(
    server_factory: Any, clients: Any
) -> None:
    port = free_port()
    alice = clients(f"ws://127.0.0.1:{port}/ws", "alice", backoff=Backoff(0.05, 0.2))
    connecting = asyncio.create_task(alice.connect(wait=True))
    # It has failed at least once and is waiting for its next try, not given up.
    await eventually(lambda: alice.state is ConnectionState.RECONNECTING)
    assert not connecting.done()
    server = await server_factory(port=port)
    welcome = await asyncio.wait_for(connecting, 10)
    assert welcome.name == "alice" and alice.state is ConnectionState.CONNECTED
    assert (await alice.join(LOBBY)).room == LOBBY
    await server.stop()


async def test_connect_wait_still_raises_a_refusal_at_once(server: Any, clients: Any) -> None:
    first = clients(server.url, "alice")
    await first.connect()
    impostor = clients(server.url, "alice", token="not-the-token", backoff=Backoff(5, 10))
    with pytest.raises(ClientError) as refused:
        await asyncio.wait_for(impostor.connect(wait=True), 5)
    assert refused.value.code == "bad_token"


async def test_close_ends_a_connect_that_waits(clients: Any) -> None:
    alice = clients(f"ws://127.0.0.1:{free_port()}/ws", "alice", backoff=Backoff(30, 60))
    connecting = asyncio.create_task(alice.connect(wait=True))
    await eventually(lambda: alice.state is ConnectionState.RECONNECTING)
    await alice.close()
    with pytest.raises(ClientError) as closed:
        await asyncio.wait_for(connecting, 5)  # not after the 15-30 s back-off
    assert closed.value.code == "closed"


async def test_reconnect_now_cuts_the_back_off_short(server_factory: Any, clients: Any) -> None:
    server = await server_factory()
    # A back-off whose first wait is 15-30 s: only reconnect_now() can make it quick.
    alice = clients(server.url, "alice", backoff=Backoff(30, 60))
    await alice.connect()
    port, data_dir = server.port, server.config.data_dir
    await server.stop(close_code=1001)  # going away: the normal back-off applies
    await eventually(lambda: alice.state is ConnectionState.RECONNECTING)
    server = await server_factory(port=port, data_dir=data_dir)
    alice.reconnect_now()
    await eventually(lambda: alice.state is ConnectionState.CONNECTED, timeout=5)
    assert (await alice.join(LOBBY)).room == LOBBY


@pytest.mark.parametrize(("close_code", "short"), [(1012, True), (1001, False)])
async def test_after_a_restart_close_the_back_off_stays_short(
    server_factory: Any, clients: Any, monkeypatch: pytest.MonkeyPatch,
    close_code: int, short: bool,
) -> None:
    monkeypatch.setattr(reconnect_module, "RESTART_CAP", 0.1)
    server = await server_factory()
    alice = clients(server.url, "alice", backoff=Backoff(0.05, 30))
    await alice.connect()
    events = Recorder(alice)
    await server.stop(close_code=close_code)
    # The server stays down: the client tries again and again.
    await events.wait(lambda r: sum(1 for s in r.states()
                                    if s.state is ConnectionState.RECONNECTING) >= 6,
                      timeout=20)
    waits = [s.retry_in for s in events.states() if s.state is ConnectionState.RECONNECTING]
    assert all(w is not None for w in waits)
    if short:
        assert max(waits) <= 0.1  # capped for a restart
    else:
        assert max(waits) > 0.1  # 0.05, 0.1, 0.2, 0.4, … as usual
