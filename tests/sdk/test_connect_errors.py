"""Problems that trying again cannot mend fail at once, with a message that says what to
fix; a per-address refusal (HTTP 429) says so, and is tried again."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from websockets.asyncio.server import serve

from cfm_common._backoff import Backoff
from cfm_common.client import ClientError, ConnectionState
from cfm_common.errors import ConnectCause, ConnectFailed
from tests.sdk.conftest import Recorder


async def refused(client: Any) -> ClientError:
    with pytest.raises(ClientError) as failed:
        # wait=True would wait for ever for a server that cannot be reached yet
        await asyncio.wait_for(client.connect(wait=True), 10)
    return failed.value


async def test_an_http_url_fails_at_once_and_names_the_ws_url(server: Any, clients: Any) -> None:
    http = server.url.replace("ws://", "http://")
    error = await refused(clients(http, "alice", backoff=Backoff(5, 10)))
    assert error.code == "connect_failed" and error.final
    assert server.url in error.msg


async def test_a_path_the_server_does_not_serve_fails_at_once(server: Any, clients: Any) -> None:
    error = await refused(clients(server.url.replace("/ws", "/chat"), "alice",
                                  backoff=Backoff(5, 10)))
    assert error.final and "HTTP 404" in error.msg and "/ws" in error.msg


async def test_a_websocket_server_that_does_not_speak_cfm_fails_at_once(clients: Any) -> None:
    async def echo(ws: Any) -> None:
        async for data in ws:
            await ws.send(data)

    async with serve(echo, "127.0.0.1", 0, subprotocols=["chat.other"]) as other:
        port = other.sockets[0].getsockname()[1]
        error = await refused(clients(f"ws://127.0.0.1:{port}/ws", "alice",
                                      backoff=Backoff(5, 10)))
    assert error.final and "cfm.v1" in error.msg
    assert isinstance(error, ConnectFailed) and error.cause is ConnectCause.NOT_CFM


async def test_too_many_connections_from_one_address_is_said_and_tried_again(
    server_factory: Any, clients: Any
) -> None:
    server = await server_factory(max_conns_per_ip=1)
    first = clients(server.url, "alice")
    await first.connect()
    second = clients(server.url, "bob", backoff=Backoff(0.05, 0.1))
    with pytest.raises(ClientError) as plain:
        await second.connect()
    assert plain.value.msg.startswith("refused: too many connections from your address")
    assert not plain.value.final

    third = clients(server.url, "carol", backoff=Backoff(0.05, 0.1))
    events = Recorder(third)
    connecting = asyncio.create_task(third.connect(wait=True))
    await events.wait(lambda r: any(s.state is ConnectionState.RECONNECTING
                                    and "too many connections" in (s.reason or "")
                                    for s in r.states()))
    await first.close()  # a place frees up: the waiting client gets in
    assert (await asyncio.wait_for(connecting, 10)).name == "carol"
