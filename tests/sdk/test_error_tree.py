"""Each failure raises its own kind of CfmError, with fields that say what happened;
``ClientError`` and its ``code`` string keep working for code written before the tree."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from websockets.asyncio.server import serve

import cfm_common
from cfm_common import codec
from cfm_common import frames as f
from cfm_common.client import ConnectionState, StateChanged
from cfm_common.errors import (
    CfmError,
    ClientError,
    ConnectCause,
    ConnectFailed,
    ConnectionClosed,
    LocalRefusal,
    ProtocolError,
    ServerRefused,
    TimedOut,
)
from cfm_common.rules import CloseCode, ErrorCode
from tests.ports import free_port
from tests.sdk.conftest import next_event


def test_the_tree() -> None:
    for kind in (ServerRefused, ConnectFailed, ConnectionClosed, TimedOut, LocalRefusal):
        assert issubclass(kind, ClientError) and issubclass(kind, CfmError)
    assert issubclass(ProtocolError, CfmError) and not issubclass(ProtocolError, ClientError)
    # The package and cfm_common.client name the same classes.
    from cfm_common import client

    assert cfm_common.ClientError is client.ClientError is ClientError
    assert cfm_common.ServerRefused is client.ServerRefused is ServerRefused


def test_a_code_unknown_to_this_sdk_stays_a_string() -> None:
    newer = ServerRefused("from_the_future", "a newer server's code")
    assert newer.code == "from_the_future" and not isinstance(newer.code, ErrorCode)
    known = ServerRefused("bad_token", "no")
    assert known.code is ErrorCode.BAD_TOKEN and known.code == "bad_token"


async def connect_error(client: Any) -> ClientError:
    with pytest.raises(ClientError) as failed:
        await asyncio.wait_for(client.connect(), 30)
    return failed.value


async def test_nothing_listening_is_refused(clients: Any) -> None:
    url = f"ws://127.0.0.1:{free_port()}/ws"
    error = await connect_error(clients(url, "alice"))
    assert isinstance(error, ConnectFailed) and error.cause is ConnectCause.REFUSED
    assert error.url == url and error.code == "connect_failed" and not error.final


async def test_a_wrong_path_is_an_http_status(server: Any, clients: Any) -> None:
    url = server.url.replace("/ws", "/chat")
    error = await connect_error(clients(url, "alice"))
    assert isinstance(error, ConnectFailed) and error.cause is ConnectCause.HTTP_STATUS
    assert error.status == 404 and error.final


async def test_a_tcp_server_that_is_not_http_is_no_handshake(clients: Any) -> None:
    async def babble(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)
        writer.write(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")
        await writer.drain()
        writer.close()

    listener = await asyncio.start_server(babble, "127.0.0.1", 0)
    async with listener:
        port = listener.sockets[0].getsockname()[1]
        error = await connect_error(clients(f"ws://127.0.0.1:{port}/ws", "alice"))
    assert isinstance(error, ConnectFailed) and error.cause is ConnectCause.NO_HANDSHAKE


async def test_wss_to_a_plain_server_is_tls(server: Any, clients: Any) -> None:
    error = await connect_error(clients(server.url.replace("ws://", "wss://"), "alice"))
    assert isinstance(error, ConnectFailed) and error.cause is ConnectCause.TLS
    assert error.detail.startswith("the TLS handshake failed")


async def test_a_taken_handle_is_a_server_refusal(server: Any, clients: Any) -> None:
    await clients(server.url, "alice").connect()
    error = await connect_error(clients(server.url, "alice"))
    assert isinstance(error, ServerRefused) and error.code is ErrorCode.NAME_TAKEN
    assert error.code == "name_taken"  # the string compare of older code still holds


async def test_a_request_the_server_refuses_carries_its_code_and_ref(
    server: Any, clients: Any
) -> None:
    alice = clients(server.url, "alice")
    await alice.connect()
    with pytest.raises(ServerRefused) as refused:
        await alice.say("hi", to="nobody")
    assert refused.value.code is ErrorCode.NO_SUCH_USER and refused.value.ref is not None


async def test_the_callers_mistake_is_refused_locally_and_nothing_is_sent(
    server: Any, clients: Any
) -> None:
    alice = clients(server.url, "alice")
    await alice.connect()
    await alice.join("#games")
    with pytest.raises(LocalRefusal) as empty:
        await alice.say("", room="#games")
    assert empty.value.code is ErrorCode.BAD_FRAME
    with pytest.raises(LocalRefusal) as long:
        await alice.say("x" * 100_000, room="#games")
    assert long.value.code is ErrorCode.TOO_LONG
    assert not isinstance(long.value, ServerRefused)
    # Nothing reached the server: the next message is the room's first.
    ack = await alice.say("hi", room="#games")
    assert ack.seq == 1


async def test_a_request_with_no_answer_times_out(clients: Any) -> None:
    """A cfm-speaking server that welcomes and then answers nothing."""
    welcome = f.Welcome(1, "s1", "alice", "tok", "alice", "online", "", "silent", {}, (), ())

    async def silent(ws: Any) -> None:
        await ws.recv()  # hello
        await ws.send(codec.encode(welcome))
        async for _ in ws:
            pass

    async with serve(silent, "127.0.0.1", 0, subprotocols=[cfm_common.SUBPROTOCOL]) as srv:
        port = srv.sockets[0].getsockname()[1]
        alice = clients(f"ws://127.0.0.1:{port}/ws", "alice", request_timeout=0.5)
        await alice.connect()
        with pytest.raises(TimedOut) as late:
            await alice.join("#games")
        await alice.close()
    assert late.value.request == "join" and late.value.seconds == 0.5
    assert late.value.code == "timeout"


async def test_a_closed_client_says_so(server: Any, clients: Any) -> None:
    alice = clients(server.url, "alice")
    await alice.connect()
    await alice.close()
    with pytest.raises(ConnectionClosed) as closed:
        await alice.join("#games")
    assert closed.value.by_client and closed.value.code == "closed"


async def test_a_final_close_from_the_server_carries_its_code(server: Any, clients: Any) -> None:
    alice = clients(server.url, "alice")
    await alice.connect()
    server.hub.users["alice"].sessions[0].close(CloseCode.BAD_TOKEN, "token revoked")
    await next_event(alice, lambda e: isinstance(e, StateChanged)
                     and e.state is ConnectionState.CLOSED)
    with pytest.raises(ConnectionClosed) as closed:
        await alice.join("#games")
    assert closed.value.close_code == CloseCode.BAD_TOKEN and not closed.value.by_client
    assert closed.value.code == "closed"
